"""tasks of the analytics app."""
