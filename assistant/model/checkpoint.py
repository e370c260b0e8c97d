"""LM checkpoints: Tutti's own format, the public Moshi LM layout (`moshi`), and MoshiVis adapters (`moshivis`).

Key checks and error messages are every stage's (`core.checkpoint`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.checkpoint import build, own_config, read_safetensors, save_model

from .config import LMConfig, lm_preset
from .layers import quantize_int8_
from .lm import StreamingLM
from .moshi import moshi_to_ours
from .moshivis import is_moshivis, moshivis_to_ours

LM_FORMAT = "tutti-lm"

def save_lm(model: StreamingLM, path: str | Path, dtype: torch.dtype | None = None) -> None:
    """Our format; `dtype` stores floating-point weights at that precision (e.g. fp16 to halve the file)."""
    save_model(model, path, LM_FORMAT, dtype)


def load_lm(path: str | Path, config: LMConfig | None = None, adapters: str | Path | None = None,
            dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", int8: bool = False) -> StreamingLM:
    """Our format (config in the file), the public Moshi or MoshiVis layout (architecture from `config`,
    default `moshi-7b` / `moshivis-7b`), read straight onto `device` at `dtype` (never a copy at another
    precision); `adapters` adds the MoshiVis adapters of another file to a Moshi file; `int8` quantizes the
    linear layers' weights."""
    tensors, metadata = read_safetensors(path, device, dtype)
    cfg = own_config(metadata, LM_FORMAT, LMConfig, path)
    if cfg is None:
        cfg = config or lm_preset("moshivis-7b" if is_moshivis(tensors) else "moshi-7b")
        tensors = moshivis_to_ours(tensors, cfg) if is_moshivis(tensors) else moshi_to_ours(tensors, cfg)
    if adapters is not None:
        extra, _ = read_safetensors(adapters, device, dtype)
        tensors.update(moshivis_to_ours(extra, cfg))
    source = str(path) if adapters is None else f"{path} + {adapters}"
    model = build(lambda: StreamingLM(cfg), tensors, source).to(device=device, dtype=dtype).eval()
    return quantize_int8_(model) if int8 else model
