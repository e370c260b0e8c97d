"""Token sampling: greedy, or temperature + top-k with per-row, batch-independent randomness.

Each row draws its noise from a counter-based hash of (its seed, its step, the
vocabulary index), so a session samples the same tokens whether it is stepped
alone or in a batch with others joining and leaving: no shared generator state.
"""
from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply), computed in int64 without overflow."""
    x = x & _MASK32
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & _MASK32
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & _MASK32
    return x ^ (x >> 16)


def row_uniform(seeds: torch.Tensor, counters: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Uniform (0, 1) noise shaped like index [B, N]: a pure function of (row seed, row counter, index)."""
    key = _mix32(_mix32(seeds.long()[:, None] * 0x2545F49 + counters.long()[:, None]) + index.long() * 0x9E3779B)
    return (key.double() + 0.5) / 2**32


def sample(logits: torch.Tensor, temperature: float, top_k: int, seeds: torch.Tensor | None = None,
           counters: torch.Tensor | None = None) -> torch.Tensor:
    """logits [B, V] -> tokens [B]. temperature <= 0 (or no seeds) means greedy.

    Gumbel-max over the top-k candidates: noise is drawn for those k entries only,
    keyed by their vocabulary index, so the draw is a sample from softmax(logits / T)
    restricted to the top k."""
    if temperature <= 0 or seeds is None:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if 0 < top_k < scores.shape[-1]:
        scores, index = scores.topk(top_k, dim=-1)
    else:
        index = torch.arange(scores.shape[-1], device=scores.device).expand_as(scores)
    gumbel = -torch.log(-torch.log(row_uniform(seeds, counters, index))).float()
    return index.gather(-1, (scores + gumbel).argmax(dim=-1, keepdim=True))[:, 0]
