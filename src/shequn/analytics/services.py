"""services of the analytics app."""
