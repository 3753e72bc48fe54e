"""selectors of the analytics app."""
