"""WeCom connector: ``inbound`` (pure parsing) and ``outbound`` (platform calls)."""
