"""Causal convolutions that stream: a step on whole strides equals the offline pass.

A causal conv carries the last (effective kernel - stride) input samples to the
next step; a causal transposed conv carries the (kernel - stride) overlap-add
tail of its output. Offline is simply one step from a fresh (zero) state.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import CodecInputError
from .state import State


class CausalConv1d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True, replicate: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride,
                              dilation=dilation, groups=groups, bias=bias)
        self.stride = stride
        self.carry = (kernel_size - 1) * dilation + 1 - stride
        # Replicate padding repeats the first sample a row ever sees instead of zeros.
        self.replicate = replicate

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        state: State = {"prev": torch.zeros(batch, self.conv.in_channels, self.carry, device=device, dtype=dtype)}
        if self.replicate:
            state["started"] = torch.zeros(batch, dtype=torch.bool, device=device)
        return state

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        if x.shape[-1] == 0 or x.shape[-1] % self.stride:
            raise CodecInputError(f"a streaming step needs a whole number of strides ({self.stride}); got {x.shape[-1]}")
        if self.carry:
            if state is None:
                state = self.init_state(x.shape[0], x.device, x.dtype)
            prev = state["prev"]
            if self.replicate:
                fresh = ~state["started"]
                prev = torch.where(fresh[:, None, None], x[..., :1].expand_as(prev), prev)
                state["started"] = torch.ones_like(fresh)
            x = torch.cat([prev, x], dim=-1)
            state["prev"] = x[..., -self.carry:]
        return self.conv(x)


class CausalConvTranspose1d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.convtr = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias)
        self.overlap = kernel_size - stride

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"tail": torch.zeros(batch, self.convtr.out_channels, self.overlap, device=device, dtype=dtype)}

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        y = self.convtr(x)
        if not self.overlap:
            return y
        if state is not None:
            y[..., : self.overlap] += state["tail"]
            tail = y[..., -self.overlap:]
            if self.convtr.bias is not None:  # the bias is added once, by the step that emits the sample
                tail = tail - self.convtr.bias[:, None]
            state["tail"] = tail
        return y[..., : -self.overlap]
