"""The MoshiVis checkpoint layout (facts: shared/specs and the MoshiVis repository).

MoshiVis files put the LM under `llm.` (audio embeddings and heads renamed
`audio_emb` / `audio_linears`), store the shared cross-attention weights once,
under layer 0 (`cross_attention.mha.in_proj_weight`; the Candle export drops
`.mha` and `llm.`), a gate per layer (`cross_attention.gate.alpha.{0,2}`), a norm
per layer (`norm_cross`), and the image projection under `image_prefix.`.
The SigLIP tower (`image_prefix.enc.*`) belongs to the vision encoder and is
left out here.
"""
from __future__ import annotations

import re

import torch

from core.checkpoint import rename_keys

from .config import LMConfig
from .moshi import moshi_to_ours

ADAPTER_KEYS: list[tuple[str, str]] = [
    (r"^transformer\.layers\.0\.cross_attention\.(mha\.)?in_proj_weight$", "vision.in_proj.weight"),
    (r"^transformer\.layers\.0\.cross_attention\.(mha\.)?out_proj\.weight$", "vision.out_proj.weight"),
    (r"^transformer\.layers\.(\d+)\.cross_attention\.gate\.alpha\.0\.weight$", r"transformer.\1.gate.linear_in.weight"),
    (r"^transformer\.layers\.(\d+)\.cross_attention\.gate\.alpha\.2\.weight$", r"transformer.\1.gate.linear_out.weight"),
    (r"^transformer\.layers\.(\d+)\.norm_cross\.alpha$", r"transformer.\1.norm_cross.alpha"),
    (r"^image_prefix\.proj_xa\.(weight|bias)$", r"vision.proj.\1"),
    (r"^image_prefix\.norm_xa\.alpha$", "vision.proj_norm.alpha"),
]
_LM_PREFIXES = [(r"^llm\.", ""), (r"^audio_emb\.", "emb."), (r"^audio_linears\.", "linears.")]
# Copies of the shared projections under layers other than 0, and the SigLIP tower.
_SKIP = re.compile(r"^(transformer\.layers\.([1-9]\d*)\.cross_attention\.(mha\.)?(in_proj_weight|out_proj\.weight)"
                   r"|image_prefix\.enc\.)")


def is_moshivis(tensors: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("llm.", "image_prefix.")) or ".cross_attention." in k for k in tensors)


def moshivis_to_ours(tensors: dict[str, torch.Tensor], cfg: LMConfig) -> dict[str, torch.Tensor]:
    """A whole MoshiVis file, or its adapter keys alone, renamed to ours."""
    plain = {}
    for key, value in tensors.items():
        for pattern, repl in _LM_PREFIXES:
            key = re.sub(pattern, repl, key)
        if not _SKIP.match(key):
            plain[key] = value
    adapters = {k: v for k, v in plain.items() if any(re.match(p, k) for p, _ in ADAPTER_KEYS)}
    rest = {k: v for k, v in plain.items() if k not in adapters}
    return {**moshi_to_ours(rest, cfg), **rename_keys(adapters, ADAPTER_KEYS)}
