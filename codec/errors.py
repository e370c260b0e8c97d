"""Typed errors with messages meant for the person who supplied the input."""
from __future__ import annotations


class CodecInputError(ValueError):
    """Audio or codes that the codec cannot take as given (rate, shape, dtype, values)."""


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt, truncated or does not fit the model."""
