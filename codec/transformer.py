"""Causal transformer for the codec's latent stream: LayerNorm, layer scale, GELU FFN around the
shared streaming attention (`core.attention`: RoPE, a ring KV cache per row)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.attention import Attention, StepContext
from core.state import State

from .config import CodecConfig


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
        self.attn = Attention(d, cfg.transformer_heads, cfg.transformer_context)
        self.scale1 = LayerScale(d, cfg.layer_scale)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.linear1 = nn.Linear(d, cfg.transformer_ffn, bias=False)
        self.linear2 = nn.Linear(cfg.transformer_ffn, d, bias=False)
        self.scale2 = LayerScale(d, cfg.layer_scale)

    def forward(self, x: torch.Tensor, state: State, ctx: StepContext) -> torch.Tensor:
        x = x + self.scale1(self.attn(self.norm1(x), state, ctx))
        return x + self.scale2(self.linear2(F.gelu(self.linear1(self.norm2(x)))))


class CodecTransformer(nn.Module):
    """Takes and returns the conv layout [B, C, T]."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.transformer_layers))

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        state: State = {str(i): layer.attn.init_state(batch, device, dtype) for i, layer in enumerate(self.layers)}
        state["end"] = torch.zeros(batch, dtype=torch.long, device=device)
        return state

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        cfg = self.cfg
        h = x.transpose(1, 2)
        ctx = StepContext.build(state["end"], h.shape[1], cfg.transformer_context,
                                cfg.dimension // cfg.transformer_heads, cfg.rope_max_period, h.dtype)
        for i, layer in enumerate(self.layers):
            h = layer(h, state[str(i)], ctx)
        state["end"] += h.shape[1]
        return h.transpose(1, 2)
