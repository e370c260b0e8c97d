"""Audio files in and out, int16 PCM, dither, and resampling in torch (windowed-sinc, polyphase).

Any rate or channel count a WAV holds is brought to what the codec takes:
channels are averaged to mono, the rate is converted by a Hann-windowed sinc
filter evaluated once per output phase, so the work is one strided conv1d.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CodecInputError

DITHER = 10 ** (-60 / 20)  # -60 dBFS: digital silence confuses recognizers and the codec alike
ZEROS = 6  # sinc zero crossings on each side of the filter centre
ROLLOFF = 0.99  # cutoff as a fraction of the lower Nyquist frequency


@lru_cache(maxsize=16)
def _kernels(orig: int, new: int) -> tuple[torch.Tensor, int]:
    cutoff = min(orig, new) * ROLLOFF  # in units where the input rate is `orig`
    width = math.ceil(ZEROS * orig / cutoff)
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    phases = -torch.arange(new, dtype=torch.float64)[:, None] / new
    t = ((taps[None, :] + phases) * cutoff).clamp(-ZEROS, ZEROS)
    window = torch.cos(t * math.pi / ZEROS / 2) ** 2
    kernel = torch.special.sinc(t) * window * cutoff / orig
    return kernel[:, None].float(), width


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample the last axis of wav from orig_rate to new_rate (any positive integers)."""
    if orig_rate <= 0 or new_rate <= 0:
        raise CodecInputError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return wav
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    kernel, width = _kernels(orig, new)
    shape = wav.shape
    x = wav.reshape(-1, 1, shape[-1])
    x = F.pad(x, (width, width + orig))
    y = F.conv1d(x, kernel.to(x.device, x.dtype), stride=orig)  # [N, new, frames]
    out_len = math.ceil(new * shape[-1] / orig)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)[:, :out_len]
    return y.reshape(*shape[:-1], out_len)


class StreamingResampler:
    """`resample` for audio arriving in pieces: the output so far always equals the offline result's
    prefix. It holds back (width + orig) input samples of look-ahead, a fraction of a millisecond."""

    def __init__(self, orig_rate: int, new_rate: int) -> None:
        if orig_rate <= 0 or new_rate <= 0:
            raise CodecInputError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
        g = math.gcd(orig_rate, new_rate)
        self.orig, self.new = orig_rate // g, new_rate // g
        self.identity = orig_rate == new_rate
        self.kernel, self.width = _kernels(self.orig, self.new)
        self.buffer = torch.zeros(self.width)  # the offline pass pads `width` zeros on the left

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        """Mono float samples in -> the resampled samples that are now final."""
        if self.identity:
            return chunk
        self.buffer = torch.cat([self.buffer, chunk.float()])
        span = 2 * self.width + self.orig
        frames = (self.buffer.shape[0] - span) // self.orig + 1 if self.buffer.shape[0] >= span else 0
        if frames <= 0:
            return torch.zeros(0)
        used = self.buffer[: (frames - 1) * self.orig + span]
        y = F.conv1d(used[None, None], self.kernel, stride=self.orig)  # [1, new, frames]
        self.buffer = self.buffer[frames * self.orig:]
        return y[0].t().reshape(-1)


def load_audio(path: str | Path, sample_rate: int, channels: int = 1) -> torch.Tensor:
    """Read any WAV/FLAC/OGG that libsndfile reads as float [channels, samples] at sample_rate."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise CodecInputError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise CodecInputError(f"cannot read {path} as audio: {e}") from None
    if data.shape[0] == 0:
        raise CodecInputError(f"{path} holds no samples")
    if not np.isfinite(data).all():
        raise CodecInputError(f"{path} holds NaN or infinite samples")
    wav = torch.from_numpy(data.T.copy())
    if wav.shape[0] != channels:
        if channels != 1:
            raise CodecInputError(f"{path} has {wav.shape[0]} channels; cannot make {channels} from them")
        wav = wav.mean(dim=0, keepdim=True)
    return resample(wav, rate, sample_rate)


def save_audio(path: str | Path, wav: torch.Tensor, sample_rate: int) -> Path:
    """Write [channels, samples] floats as 16-bit PCM, clipped to [-1, 1]."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = wav.detach().float().clamp(-1, 1).cpu().numpy().T
    sf.write(str(path), data, sample_rate, subtype="PCM_16")
    return path


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] (clipped) -> little-endian int16, as files and the wire carry them."""
    return (np.clip(samples, -1, 1) * 32767).astype("<i2")


def from_pcm16(data: bytes | np.ndarray) -> np.ndarray:
    """Little-endian int16 PCM (bytes or an array) -> float32 samples in [-1, 1)."""
    pcm = np.frombuffer(data, "<i2") if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data)
    return pcm.astype(np.float32) / 32768


def dither(wav: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """wav plus a -60 dBFS noise floor, as from a microphone in a quiet room (what the models learnt quiet as)."""
    return wav + torch.from_numpy(rng.standard_normal(wav.shape[-1]) * DITHER).float()
