"""SEANet encoder and decoder (causal, ELU, residual units with compressed width).

Layers sit in one list in the order the public Mimi checkpoint numbers them,
activations included, so that checkpoint indices map one to one.
"""
from __future__ import annotations

import torch
from torch import nn

from core.state import State

from .config import CodecConfig
from .conv import CausalConv1d, CausalConvTranspose1d


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int) -> None:
        super().__init__()
        hidden = dim // compress
        self.act = nn.ELU()
        self.conv1 = CausalConv1d(dim, hidden, kernel_size, dilation=dilation)
        self.conv2 = CausalConv1d(hidden, dim, 1)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"conv1": self.conv1.init_state(batch, device, dtype)}

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        h = self.conv1(self.act(x), None if state is None else state["conv1"])
        return x + self.conv2(self.act(h))


class StreamingStack(nn.Module):
    """Layers run in order; those with an `init_state` get their own entry of the state."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self._stateful = [str(i) for i, m in enumerate(layers) if hasattr(m, "init_state")]

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        states = {str(i): m.init_state(batch, device, dtype) for i, m in enumerate(self.layers) if str(i) in self._stateful}
        return {k: v for k, v in states.items() if v}

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            key = str(i)
            if key in self._stateful:
                x = layer(x, None if state is None else state.get(key))
            else:
                x = layer(x)
        return x


def _residuals(cfg: CodecConfig, dim: int) -> list[nn.Module]:
    return [ResidualUnit(dim, cfg.residual_kernel_size, cfg.dilation_base ** j, cfg.compress)
            for j in range(cfg.n_residual_layers)]


def seanet_encoder(cfg: CodecConfig) -> StreamingStack:
    width = cfg.n_filters
    layers: list[nn.Module] = [CausalConv1d(cfg.channels, width, cfg.kernel_size)]
    for ratio in reversed(cfg.ratios):
        layers += _residuals(cfg, width)
        layers += [nn.ELU(), CausalConv1d(width, width * 2, 2 * ratio, stride=ratio)]
        width *= 2
    layers += [nn.ELU(), CausalConv1d(width, cfg.dimension, cfg.last_kernel_size)]
    return StreamingStack(layers)


def seanet_decoder(cfg: CodecConfig) -> StreamingStack:
    width = cfg.n_filters * 2 ** len(cfg.ratios)
    layers: list[nn.Module] = [CausalConv1d(cfg.dimension, width, cfg.kernel_size)]
    for ratio in cfg.ratios:
        layers += [nn.ELU(), CausalConvTranspose1d(width, width // 2, 2 * ratio, ratio)]
        width //= 2
        layers += _residuals(cfg, width)
    layers += [nn.ELU(), CausalConv1d(width, cfg.channels, cfg.last_kernel_size)]
    return StreamingStack(layers)
