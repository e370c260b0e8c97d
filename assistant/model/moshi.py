"""The public Moshi LM layout (facts: shared/specs and the moshi package's key names).

Public Moshi files store the depth transformer's per-stream attention weights
stacked in one tensor (`in_proj_weight` [steps * 3d, d]); they are split here
into our per-stream modules, and the other keys are renamed by the table.
"""
from __future__ import annotations

import re

import torch

from core.checkpoint import rename_keys
from core.errors import CheckpointError

from .config import LMConfig

MOSHI_KEYS: list[tuple[str, str]] = [
    (r"^transformer\.layers\.(\d+)\.self_attn\.(in_proj_weight|in_projs\.0\.weight)$", r"transformer.\1.self_attn.in_proj.weight"),
    (r"^transformer\.layers\.(\d+)\.self_attn\.(out_proj|out_projs\.0)\.weight$", r"transformer.\1.self_attn.out_proj.weight"),
    (r"^transformer\.layers\.(\d+)\.", r"transformer.\1."),
    (r"^depformer\.layers\.(\d+)\.self_attn\.in_projs\.(\d+)\.weight$", r"depformer.\1.in_projs.\2.weight"),
    (r"^depformer\.layers\.(\d+)\.self_attn\.out_projs\.(\d+)\.weight$", r"depformer.\1.out_projs.\2.weight"),
    (r"^depformer\.layers\.(\d+)\.", r"depformer.\1."),
]
_STACKED = re.compile(r"^depformer\.layers\.(\d+)\.self_attn\.(in_proj_weight|out_proj\.weight)$")


def _split_stacked(tensors: dict[str, torch.Tensor], steps: int) -> dict[str, torch.Tensor]:
    """Depth attention weights stacked over the generated streams -> one tensor per stream."""
    out = {}
    for key, value in tensors.items():
        m = _STACKED.match(key)
        if not m:
            out[key] = value
            continue
        if value.shape[0] % steps:
            raise CheckpointError(f"{key} {list(value.shape)} does not split into {steps} streams")
        kind = "in_projs" if m.group(2) == "in_proj_weight" else "out_projs"
        for i, part in enumerate(value.chunk(steps, dim=0)):
            out[f"depformer.layers.{m.group(1)}.self_attn.{kind}.{i}.weight"] = part
    return out


def moshi_to_ours(tensors: dict[str, torch.Tensor], cfg: LMConfig) -> dict[str, torch.Tensor]:
    return rename_keys(_split_stacked(tensors, cfg.dep_q), MOSHI_KEYS)
