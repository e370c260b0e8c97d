"""Codec dimensions as a typed dataclass, with named presets.

The `mimi` preset is the public Mimi configuration (see shared/specs); the
smaller presets keep the same architecture so that every code path the public
model uses is exercised by the bundled model and the tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from core.config import JsonConfig, named


@dataclass(frozen=True)
class CodecConfig(JsonConfig):
    sample_rate: int = 24_000
    frame_rate: float = 12.5
    channels: int = 1
    # SEANet
    dimension: int = 512
    n_filters: int = 64
    ratios: tuple[int, ...] = (8, 6, 5, 4)  # decoder order; the encoder reverses it
    kernel_size: int = 7
    residual_kernel_size: int = 3
    last_kernel_size: int = 3
    n_residual_layers: int = 1
    dilation_base: int = 2
    compress: int = 2
    # encoder / decoder transformers (run at the SEANet hop rate)
    transformer_layers: int = 8
    transformer_heads: int = 8
    transformer_ffn: int = 2048
    transformer_context: int = 250
    rope_max_period: float = 10_000.0
    layer_scale: float = 0.01
    # split residual vector quantizer
    n_q: int = 32  # total codebooks: 1 semantic + (n_q - 1) acoustic
    n_q_semantic: int = 1
    bins: int = 2048
    codebook_dim: int = 256
    num_codebooks: int = 8  # codebooks used by encode() (Moshi uses 8)
    # output head: "seanet" (Mimi's upsampling conv decoder) or "istft" (predicted STFT frames, overlap-added)
    decoder_head: str = "seanet"
    istft_hop: int = 0  # samples between STFT frames (must divide the encoder hop)
    istft_n_fft: int = 0
    # training-only settings (ignored at inference)
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.1  # fraction of uniform usage below which a code is restarted
    quantizer_dropout: bool = True

    def __post_init__(self) -> None:
        if self.sample_rate % self.hop_length:
            raise ValueError(f"sample_rate {self.sample_rate} is not a multiple of the hop {self.hop_length}")
        ratio = self.encoder_frame_rate / self.frame_rate
        if ratio < 1 or ratio != int(ratio):
            raise ValueError(f"encoder rate {self.encoder_frame_rate} Hz must be an integer multiple of {self.frame_rate} Hz")
        if not self.n_q_semantic < self.n_q:
            raise ValueError("n_q must exceed n_q_semantic")
        if not self.n_q_semantic <= self.num_codebooks <= self.n_q:
            raise ValueError(f"num_codebooks must lie in [{self.n_q_semantic}, {self.n_q}]")
        if self.decoder_head not in ("seanet", "istft"):
            raise ValueError(f"decoder_head must be 'seanet' or 'istft', got {self.decoder_head!r}")
        if self.decoder_head == "istft" and not (
                self.istft_hop > 0 and self.hop_length % self.istft_hop == 0 and (self.istft_n_fft // 2) % self.istft_hop == 0):
            raise ValueError("istft_hop must divide the encoder hop and half of istft_n_fft")
        if self.dimension % self.transformer_heads or (self.dimension // self.transformer_heads) % 2:
            raise ValueError("dimension must split into heads of even size (RoPE)")

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @property
    def encoder_frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def resample_stride(self) -> int:
        return int(self.encoder_frame_rate / self.frame_rate)

    @property
    def frame_size(self) -> int:
        """Samples per codec frame (1920 for Mimi: 80 ms at 24 kHz)."""
        return self.hop_length * self.resample_stride

    @property
    def output_delay(self) -> int:
        """Samples by which decoded audio lags the input (the iSTFT head's overlap; 0 for SEANet)."""
        return self.istft_n_fft - self.istft_hop if self.decoder_head == "istft" else 0


PRESETS: dict[str, CodecConfig] = {
    "mimi": CodecConfig(),
    # The bundled model (tutti-tiny): 16 kHz speech, an iSTFT head, real time with room to spare on 2 CPU cores.
    "tiny": CodecConfig(
        sample_rate=16_000, ratios=(8, 5, 4, 2), dimension=128, n_filters=16, transformer_layers=2,
        transformer_heads=4, transformer_ffn=256, n_q=8, bins=1024, codebook_dim=64, num_codebooks=8,
        decoder_head="istft", istft_hop=80, istft_n_fft=320,
    ),
    # The smallest model that still has every part; used by unit tests.
    "test": CodecConfig(
        dimension=32, n_filters=4, transformer_layers=2, transformer_heads=4,
        transformer_ffn=64, transformer_context=12, n_q=4, bins=32, codebook_dim=16, num_codebooks=4,
    ),
}


def preset(name: str) -> CodecConfig:
    return named(PRESETS, name, "codec")
