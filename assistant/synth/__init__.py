"""Synthetic training data for tutti-tiny: espeak-ng speech, drawn scenes, dialogues. Deterministic from a seed."""
