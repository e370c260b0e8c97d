"""Causal transformer for the codec's latent stream: RoPE, LayerNorm, layer scale, GELU FFN.

Attention state is a ring of the last `context` keys/values per row with the
row's own position counter, so a stream runs for hours in constant memory. A
step attends to [ring ∪ new keys] under the causal + context mask; the offline
pass is one step from an empty ring, so both paths are the same code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import CodecConfig
from .state import State


def rope(x: torch.Tensor, positions: torch.Tensor, max_period: float) -> torch.Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of x [B, H, T, D] by positions [B, T]."""
    d = x.shape[-1]
    freqs = torch.exp(torch.arange(d // 2, device=x.device, dtype=torch.float32) * (-2 * math.log(max_period) / d))
    angles = positions.float()[:, None, :, None] * freqs
    cos, sin = torch.cos(angles), torch.sin(angles)
    pairs = x.float().unflatten(-1, (d // 2, 2))
    re, im = pairs[..., 0], pairs[..., 1]
    return torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1).flatten(-2).to(x.dtype)


def ring_positions(end: torch.Tensor, capacity: int) -> torch.Tensor:
    """Position held by each ring slot [B, capacity]; -1 where the slot was never written."""
    slots = torch.arange(capacity, device=end.device)
    last = end[:, None] - 1
    pos = last - torch.remainder(last - slots, capacity)
    return torch.where(pos >= 0, pos, torch.full_like(pos, -1))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, context: int, max_period: float) -> None:
        super().__init__()
        self.heads, self.context, self.max_period = heads, context, max_period
        self.in_proj = nn.Linear(dim, 3 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        shape = (batch, self.heads, self.context, self.in_proj.in_features // self.heads)
        return {"k": torch.zeros(shape, device=device, dtype=dtype), "v": torch.zeros(shape, device=device, dtype=dtype)}

    def forward(self, x: torch.Tensor, state: State, end: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.in_proj(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        pos_q = end[:, None] + torch.arange(T, device=x.device)
        q, k = rope(q, pos_q, self.max_period), rope(k, pos_q, self.max_period)
        pos_k = torch.cat([ring_positions(end, self.context), pos_q], dim=1)
        delta = pos_q[:, :, None] - pos_k[:, None, :]
        mask = (pos_k[:, None, :] >= 0) & (delta >= 0) & (delta < self.context)
        keys = torch.cat([state["k"], k], dim=2)
        values = torch.cat([state["v"], v], dim=2)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None])
        self._write(state, k, v, pos_q)
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def _write(self, state: State, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor) -> None:
        n = min(k.shape[2], self.context)
        slots = torch.remainder(pos[:, -n:], self.context)[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        state["k"] = state["k"].scatter(2, slots, k[:, :, -n:])
        state["v"] = state["v"].scatter(2, slots, v[:, :, -n:])


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class TransformerLayer(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        d = cfg.dimension
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d, cfg.transformer_heads, cfg.transformer_context, cfg.rope_max_period)
        self.scale1 = LayerScale(d, cfg.layer_scale)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.linear1 = nn.Linear(d, cfg.transformer_ffn, bias=False)
        self.linear2 = nn.Linear(cfg.transformer_ffn, d, bias=False)
        self.scale2 = LayerScale(d, cfg.layer_scale)

    def forward(self, x: torch.Tensor, state: State, end: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1(self.attn(self.norm1(x), state, end))
        return x + self.scale2(self.linear2(F.gelu(self.linear1(self.norm2(x)))))


class CodecTransformer(nn.Module):
    """Takes and returns the conv layout [B, C, T]."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.transformer_layers))

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        state: State = {str(i): layer.attn.init_state(batch, device, dtype) for i, layer in enumerate(self.layers)}
        state["end"] = torch.zeros(batch, dtype=torch.long, device=device)
        return state

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        end = state["end"]
        h = x.transpose(1, 2)
        for i, layer in enumerate(self.layers):
            h = layer(h, state[str(i)], end)
        state["end"] = end + h.shape[1]
        return h.transpose(1, 2)
