"""Mel spectrograms in torch (no torchaudio), for the codec's training loss and quality checks."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


@lru_cache(maxsize=16)
def mel_filters(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1] spanning 0 Hz to Nyquist."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    top = _hz_to_mel(torch.tensor(sample_rate / 2, dtype=torch.float64))
    edges = 700.0 * (10 ** (torch.linspace(0, float(top), n_mels + 2, dtype=torch.float64) / 2595.0) - 1.0)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return up.minimum(down).clamp(min=0).float()


def log_mel(wav: torch.Tensor, sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """[..., T] -> log-mel [..., n_mels, frames] with hop n_fft / 4."""
    flat = wav.reshape(-1, wav.shape[-1]).float()
    spec = torch.stft(flat, n_fft, n_fft // 4, window=torch.hann_window(n_fft, device=wav.device),
                      return_complex=True).abs()
    mel = torch.matmul(mel_filters(n_fft, n_mels, sample_rate).to(wav.device), spec)
    return torch.log(mel.clamp(min=1e-5)).reshape(*wav.shape[:-1], n_mels, -1)


def multi_scale_mel_loss(pred: torch.Tensor, target: torch.Tensor, sample_rate: int,
                         scales: tuple[int, ...] = (256, 512, 1024, 2048)) -> torch.Tensor:
    """Mean L1 distance of log-mel spectrograms at several window sizes (time and frequency detail both)."""
    losses = [F.l1_loss(log_mel(pred, sample_rate, n, min(n // 8, 80)), log_mel(target, sample_rate, n, min(n // 8, 80)))
              for n in scales]
    return torch.stack(losses).mean()
