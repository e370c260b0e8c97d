"""Typed errors with messages meant for the person who supplied the input (see the tree in `core`)."""
from __future__ import annotations


class TuttiError(Exception):
    """Anything Tutti refuses, with a message a user understands; never a traceback to a client."""


class InputError(TuttiError, ValueError):
    """Input from a person, a file or the network that a stage cannot take as given."""


class CodecInputError(InputError):
    """Audio or codes that the codec cannot take as given (rate, shape, dtype, values)."""


class FrameError(InputError):
    """A frame the vision encoder cannot take (empty, tiny, huge, odd dtype or layout, NaN)."""


class ModelInputError(InputError):
    """Tokens or vision input the model cannot take as given."""


class CheckpointError(TuttiError, ValueError):
    """A checkpoint file that is missing, corrupt, truncated or does not fit the model."""


class EngineError(TuttiError, ValueError):
    """A model combination or a request the engine cannot serve (e.g. every session slot is taken)."""


class MismatchError(EngineError):
    """Stages that do not fit together (an LM for other codes, vision tokens of another width)."""
