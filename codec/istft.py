"""A streaming inverse-STFT output head (Vocos/WavTokenizer style) in place of the SEANet decoder.

The decoder's latent, at the encoder's hop rate, predicts `hop_length / istft_hop`
STFT frames per step (log magnitude and phase), which are inverted and
overlap-added. Emitted samples are final: the (n_fft - istft_hop) samples still
awaiting later frames are carried in the state, as a transposed conv carries its
tail, so output lags input by that many samples (`CodecConfig.output_delay`).
Far cheaper to train and run than upsampling convs at the sample rate.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.state import State, write

from .config import CodecConfig
from .conv import CausalConv1d

MAX_LOG_MAGNITUDE = 6.0  # exp(6) ~ 400: bounds the spectrum early in training


class ISTFTHead(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.hop, self.n_fft = cfg.istft_hop, cfg.istft_n_fft
        self.frames = cfg.hop_length // cfg.istft_hop  # STFT frames per latent step
        self.bins = self.n_fft // 2 + 1
        self.conv = CausalConv1d(cfg.dimension, cfg.dimension, cfg.kernel_size)
        self.act = nn.ELU()
        self.proj = CausalConv1d(cfg.dimension, self.frames * 2 * self.bins, 1)
        window = torch.hann_window(self.n_fft, device="cpu")  # computed, not stored: real even on the meta device
        # Overlap-added squared windows sum to this constant when the hop divides n_fft / 2.
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("norm", (window ** 2).sum() / self.hop, persistent=False)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"conv": self.conv.init_state(batch, device, dtype),
                "tail": torch.zeros(batch, 1, self.n_fft - self.hop, device=device, dtype=dtype)}

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        """Latent [B, dimension, T] -> audio [B, 1, T * hop_length]."""
        h = self.proj(self.act(self.conv(x, None if state is None else state["conv"])))
        b, _, t = h.shape
        h = h.view(b, self.frames, 2, self.bins, t).permute(0, 4, 1, 2, 3).reshape(b, t * self.frames, 2, self.bins)
        spec = torch.polar(h[:, :, 0].float().clamp(max=MAX_LOG_MAGNITUDE).exp(), h[:, :, 1].float())
        frames = torch.fft.irfft(spec, n=self.n_fft) * self.window / self.norm  # [B, F, n_fft]
        length = (frames.shape[1] - 1) * self.hop + self.n_fft
        y = F.fold(frames.transpose(1, 2), (1, length), (1, self.n_fft), stride=(1, self.hop)).flatten(1, 2)
        y = y.to(x.dtype)
        if state is not None:
            y = torch.cat([y[..., : self.n_fft - self.hop] + state["tail"], y[..., self.n_fft - self.hop:]], dim=-1)
            write(state, "tail", y[..., -(self.n_fft - self.hop):])
        return y[..., : -(self.n_fft - self.hop)]
