"""tasks of the communities app."""
