"""Streaming self-attention shared by the codec's transformers and the LM's temporal transformer.

Attention state is a ring of the last `context` keys/values per row with the
row's own position counter, so a stream runs for hours in constant memory. A
step attends to the ring and to its own new keys under the causal + context
mask (scores are joined, never the keys, so the ring is read once and not
copied); the offline pass is one step from an empty ring: one code path.
Positions are rotary (RoPE, interleaved pairs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .state import State


def rope_angles(positions: torch.Tensor, dim: int, max_period: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [B, 1, T, dim/2] for interleaved-pair RoPE at integer positions [B, T]."""
    freqs = torch.exp(torch.arange(dim // 2, device=positions.device, dtype=torch.float32)
                      * (-2 * math.log(max_period) / dim))
    angles = positions.float()[:, None, :, None] * freqs
    return torch.cos(angles), torch.sin(angles)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x[2i], x[2i+1]) of x [B, H, T, D]."""
    pairs = x.float().unflatten(-1, (-1, 2))
    re, im = pairs[..., 0], pairs[..., 1]
    return torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1).flatten(-2).to(x.dtype)


def ring_positions(end: torch.Tensor, capacity: int) -> torch.Tensor:
    """Position held by each ring slot [B, capacity]; -1 where the slot was never written."""
    slots = torch.arange(capacity, device=end.device)
    last = end[:, None] - 1
    pos = last - torch.remainder(last - slots, capacity)
    return torch.where(pos >= 0, pos, torch.full_like(pos, -1))


@dataclass
class StepContext:
    """What every layer of one step shares: positions, rotations and the additive masks."""
    positions: torch.Tensor  # [B, T]
    cos: torch.Tensor
    sin: torch.Tensor
    ring_bias: torch.Tensor  # [B, 1, T, capacity]
    new_bias: torch.Tensor  # [1, 1, T, T]

    @classmethod
    def build(cls, end: torch.Tensor, steps: int, context: int, head_dim: int, max_period: float,
              dtype: torch.dtype) -> StepContext:
        pos_q = end[:, None] + torch.arange(steps, device=end.device)
        pos_ring = ring_positions(end, context)
        delta = pos_q[:, :, None] - pos_ring[:, None, :]
        allowed = (pos_ring[:, None, :] >= 0) & (delta < context)  # ring slots are all in the past
        ar = torch.arange(steps, device=end.device)
        d_new = ar[:, None] - ar[None, :]
        allowed_new = (d_new >= 0) & (d_new < context)
        cos, sin = rope_angles(pos_q, head_dim, max_period)
        return cls(pos_q, cos, sin, _bias(allowed, dtype)[:, None], _bias(allowed_new, dtype)[None, None])


def _bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, context: int) -> None:
        super().__init__()
        self.heads, self.context = heads, context
        self.in_proj = nn.Linear(dim, 3 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        shape = (batch, self.heads, self.context, self.in_proj.in_features // self.heads)
        return {"k": torch.zeros(shape, device=device, dtype=dtype), "v": torch.zeros(shape, device=device, dtype=dtype)}

    def forward(self, x: torch.Tensor, state: State, ctx: StepContext) -> torch.Tensor:
        q, k, v = self.in_proj(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        q, k = rope(q, ctx.cos, ctx.sin), rope(k, ctx.cos, ctx.sin)
        scale = q.shape[-1] ** -0.5
        scores = torch.cat([torch.matmul(q, state["k"].transpose(-1, -2)) * scale + ctx.ring_bias,
                            torch.matmul(q, k.transpose(-1, -2)) * scale + ctx.new_bias], dim=-1)
        weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        ring_w, new_w = weights.split([self.context, k.shape[2]], dim=-1)
        out = torch.matmul(ring_w, state["v"]) + torch.matmul(new_w, v)
        self._write(state, k, v, ctx.positions)
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def _write(self, state: State, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor) -> None:
        n = min(k.shape[2], self.context)
        slots = torch.remainder(pos[:, -n:], self.context)  # [B, n]
        if torch.is_grad_enabled():  # training: the old ring is still needed by autograd
            index = slots[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            state["k"] = state["k"].scatter(2, index, k[:, :, -n:])
            state["v"] = state["v"].scatter(2, index, v[:, :, -n:])
        else:  # in place, indexing (row, slot) pairs: a scatter over the whole ring costs far more
            rows = torch.arange(k.shape[0], device=k.device)[:, None].expand_as(slots)
            state["k"].transpose(1, 2)[rows, slots] = k[:, :, -n:].transpose(1, 2)
            state["v"].transpose(1, 2)[rows, slots] = v[:, :, -n:].transpose(1, 2)
