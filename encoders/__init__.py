"""Vision: a SigLIP-architecture ViT and the change-only sparse encoder that feeds the LM."""
from __future__ import annotations

from .frames import FrameError, to_pixels
from .siglip import VISION_PRESETS, SiglipVision, VisionConfig, load_vision, save_vision, vision_preset
from .sparse import FrameResult, SparseBatch, SparseEncoder, SparseSettings

__all__ = ["FrameError", "to_pixels", "VISION_PRESETS", "SiglipVision", "VisionConfig", "load_vision", "save_vision",
           "vision_preset", "FrameResult", "SparseBatch", "SparseEncoder", "SparseSettings"]
