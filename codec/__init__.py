"""Streaming neural audio codec (Mimi architecture): microphone audio to tokens, tokens to speech."""
from __future__ import annotations

from core.errors import CheckpointError, CodecInputError

from .checkpoint import load_codec, save_codec
from .config import PRESETS, CodecConfig, preset
from .model import MimiCodec

__all__ = ["PRESETS", "CodecConfig", "preset", "CheckpointError", "CodecInputError", "MimiCodec", "load_codec",
           "save_codec"]
