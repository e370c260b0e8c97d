"""Causal convolutions that stream: a step on whole strides equals the offline pass.

A causal conv carries the last (effective kernel - stride) input samples to the
next step; a causal transposed conv carries the (kernel - stride) overlap-add
tail of its output. Offline is simply one step from a fresh (zero) state.

Streaming steps deep in the network are a few samples long, where a plain
matmul over unfolded windows reads the weights once and beats the conv
kernels' setup cost on a CPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import CodecInputError
from core.state import State, write

# Below these many output (conv) or input (transposed conv) steps, use the matmul form;
# 1x1 convs always use it (they are a plain linear map). Chosen on Mimi's layer shapes (bench/codec.py).
SHORT_CONV = 16
SHORT_CONVTR = 64


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
                state["started"].fill_(True)
            x = torch.cat([prev, x], dim=-1)
            write(state, "prev", x[..., -self.carry:])
        conv = self.conv
        span = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
        pointwise = span == 1 and self.stride == 1
        if conv.groups > 1 or (not pointwise and (x.shape[-1] - span) // self.stride + 1 >= SHORT_CONV):
            return conv(x)
        windows = x.unfold(-1, span, self.stride)[..., :: conv.dilation[0]]  # [B, Cin, Tout, K]
        y = torch.matmul(windows.transpose(1, 2).flatten(2), conv.weight.flatten(1).t()).transpose(1, 2)
        return y if conv.bias is None else y + conv.bias[:, None]


class CausalConvTranspose1d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.convtr = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias)
        self.overlap = kernel_size - stride

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"tail": torch.zeros(batch, self.convtr.out_channels, self.overlap, device=device, dtype=dtype)}

    def _transpose_conv(self, x: torch.Tensor) -> torch.Tensor:
        convtr = self.convtr
        depthwise = convtr.groups == convtr.in_channels == convtr.out_channels
        if (convtr.groups > 1 and not depthwise) or x.shape[-1] >= SHORT_CONVTR:
            return convtr(x)
        (kernel,), (stride,) = convtr.kernel_size, convtr.stride
        if depthwise:  # each channel scales its own kernel: an outer product, no matmul
            cols = (x[:, :, None, :] * convtr.weight.view(-1, kernel, 1)).flatten(1, 2)  # [B, C*K, T]
        else:
            cols = torch.matmul(x.transpose(1, 2), convtr.weight.flatten(1)).transpose(1, 2)  # [B, Cout*K, T]
        length = (x.shape[-1] - 1) * stride + kernel
        y = F.fold(cols, (1, length), (1, kernel), stride=(1, stride)).flatten(1, 2)
        return y if convtr.bias is None else y + convtr.bias[:, None]

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        y = self._transpose_conv(x)
        if not self.overlap:
            return y
        if state is not None:
            y[..., : self.overlap] += state["tail"]
            tail = y[..., -self.overlap:]
            if self.convtr.bias is not None:  # the bias is added once, by the step that emits the sample
                tail = tail - self.convtr.bias[:, None]
            write(state, "tail", tail)
        return y[..., : -self.overlap]
