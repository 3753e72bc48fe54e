"""admin of the analytics app."""
