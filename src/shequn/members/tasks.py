"""tasks of the members app."""
