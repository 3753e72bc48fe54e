from shequn.core.logging import redact
from shequn.core.masking import mask_phone


def test_mask_phone():
    assert mask_phone("13812348888") == "138****8888"
    assert mask_phone("") == ""


def test_redact_masks_phone_and_secrets():
    out = redact("user 13812348888 token=abcdef123 mail ab@x.cn")
    assert "13812348888" not in out and "abcdef123" not in out and "138****8888" in out
