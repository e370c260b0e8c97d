"""The streaming fused LM stage (Moshi architecture with MoshiVis-style gated cross-attention to vision)."""
from __future__ import annotations

from .checkpoint import load_lm, save_lm
from .config import LMConfig, lm_preset
from .lm import StreamingLM
from .tokenizer import TextTokenizer

__all__ = ["LMConfig", "StreamingLM", "TextTokenizer", "lm_preset", "load_lm", "save_lm"]
