"""Data shipped with the moderation engine: default rule pack, labelled set, trained model."""
