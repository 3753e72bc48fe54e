"""api of the analytics app."""
