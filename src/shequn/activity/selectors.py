"""selectors of the activity app."""
