"""Streaming neural audio codec (Mimi architecture): microphone audio to tokens, tokens to speech."""
from __future__ import annotations

from .config import PRESETS, CodecConfig, preset
from .checkpoint import load_codec, save_codec
from .errors import CheckpointError, CodecInputError
from .model import MimiCodec
from .state import cat_rows, reset_rows, select_rows

__all__ = ["PRESETS", "CodecConfig", "preset", "CheckpointError", "CodecInputError", "MimiCodec",
           "cat_rows", "load_codec", "save_codec", "reset_rows", "select_rows"]
