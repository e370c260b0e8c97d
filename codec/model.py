"""The Mimi-architecture codec: waveform <-> discrete codes, offline and streaming.

encode: SEANet encoder -> transformer -> learned downsample (hop rate -> frame
rate) -> split RVQ. decode mirrors it with a depthwise transposed-conv
upsample. Streaming steps take whole frames and carry an explicit state per
batch row; offline calls are one step from a fresh state, so the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.errors import CodecInputError
from core.state import State

from .config import CodecConfig
from .conv import CausalConv1d, CausalConvTranspose1d
from .istft import ISTFTHead
from .quantizer import SplitRVQ
from .seanet import seanet_decoder, seanet_encoder
from .transformer import CodecTransformer


@dataclass
class TrainOutput:
    audio: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    restarted: float  # fraction of codebook entries restarted this step


class MimiCodec(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        s = cfg.resample_stride
        self.encoder = seanet_encoder(cfg)
        self.encoder_transformer = CodecTransformer(cfg)
        self.downsample = CausalConv1d(cfg.dimension, cfg.dimension, 2 * s, s, bias=False, replicate=True)
        self.quantizer = SplitRVQ(cfg)
        self.upsample = CausalConvTranspose1d(cfg.dimension, cfg.dimension, 2 * s, s, groups=cfg.dimension, bias=False)
        self.decoder_transformer = CodecTransformer(cfg)
        self.decoder = seanet_decoder(cfg) if cfg.decoder_head == "seanet" else ISTFTHead(cfg)

    @property
    def frame_size(self) -> int:
        return self.cfg.frame_size

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    # -- state ---------------------------------------------------------------------------------
    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    def init_encode_state(self, batch: int) -> State:
        p = self._param()
        return {"encoder": self.encoder.init_state(batch, p.device, p.dtype),
                "transformer": self.encoder_transformer.init_state(batch, p.device, p.dtype),
                "downsample": self.downsample.init_state(batch, p.device, p.dtype)}

    def init_decode_state(self, batch: int) -> State:
        p = self._param()
        return {"upsample": self.upsample.init_state(batch, p.device, p.dtype),
                "transformer": self.decoder_transformer.init_state(batch, p.device, p.dtype),
                "decoder": self.decoder.init_state(batch, p.device, p.dtype)}

    # -- input checks --------------------------------------------------------------------------
    def _check_audio(self, wav: torch.Tensor, sample_rate: int | None) -> torch.Tensor:
        if sample_rate is not None and sample_rate != self.cfg.sample_rate:
            raise CodecInputError(f"audio is at {sample_rate} Hz; this codec takes {self.cfg.sample_rate} Hz (resample first)")
        if not isinstance(wav, torch.Tensor):
            raise CodecInputError(f"audio must be a torch.Tensor, got {type(wav).__name__}")
        if wav.dim() != 3 or wav.shape[1] != self.cfg.channels:
            raise CodecInputError(f"audio must be shaped [batch, {self.cfg.channels}, samples]; got {list(wav.shape)}")
        if not wav.is_floating_point():
            raise CodecInputError(f"audio samples must be floats in [-1, 1], got {wav.dtype} (scale integer PCM first)")
        if not torch.isfinite(wav).all():
            raise CodecInputError("audio contains NaN or infinite samples")
        return wav.to(self._param().dtype)

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3:
            raise CodecInputError(f"codes must be a tensor shaped [batch, codebooks, frames]; got {getattr(codes, 'shape', type(codes))}")
        if codes.is_floating_point() or codes.dtype == torch.bool:
            raise CodecInputError(f"codes must be integers, got {codes.dtype}")
        if not self.cfg.n_q_semantic <= codes.shape[1] <= self.cfg.n_q:
            raise CodecInputError(f"got {codes.shape[1]} codebooks; this codec decodes {self.cfg.n_q_semantic} to {self.cfg.n_q}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.cfg.bins):
            raise CodecInputError(f"codes must lie in [0, {self.cfg.bins}); got values from {int(codes.min())} to {int(codes.max())}")
        return codes.long()

    # -- streaming -----------------------------------------------------------------------------
    def encode_step(self, wav: torch.Tensor, state: State, sample_rate: int | None = None,
                    checked: bool = True) -> torch.Tensor:
        """Whole frames [B, C, k * frame_size] -> codes [B, num_codebooks, k]. `checked=False` skips the checks
        that read values (finite samples), which wait on the device: for callers whose audio is checked already."""
        wav = self._check_audio(wav, sample_rate) if checked else wav.to(self._param().dtype)
        if wav.shape[-1] == 0 or wav.shape[-1] % self.frame_size:
            raise CodecInputError(f"a streaming step takes whole frames of {self.frame_size} samples; got {wav.shape[-1]}")
        return self._encode(wav, state)

    def decode_step(self, codes: torch.Tensor, state: State, checked: bool = True) -> torch.Tensor:
        """codes [B, K, k] -> audio [B, C, k * frame_size]; `checked=False` as for `encode_step` (codes the codec
        or the LM made)."""
        codes = self._check_codes(codes) if checked else codes
        if codes.shape[-1] == 0:
            raise CodecInputError("a streaming decode step needs at least one frame of codes")
        return self._decode(codes, state)

    def _encode(self, wav: torch.Tensor, state: State) -> torch.Tensor:
        latent = self.encoder(wav, state["encoder"])
        latent = self.encoder_transformer(latent, state["transformer"])
        latent = self.downsample(latent, state["downsample"])
        return self.quantizer.encode(latent, self.cfg.num_codebooks)

    def _decode(self, codes: torch.Tensor, state: State) -> torch.Tensor:
        latent = self.upsample(self.quantizer.decode(codes), state["upsample"])
        latent = self.decoder_transformer(latent, state["transformer"])
        return self.decoder(latent, state["decoder"])

    # -- offline -------------------------------------------------------------------------------
    def encode(self, wav: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Any length [B, C, T] -> codes [B, num_codebooks, ceil(T / frame_size)] (zero-padded at the end)."""
        wav = self._check_audio(wav, sample_rate)
        if wav.shape[-1] == 0:
            raise CodecInputError("audio is empty")
        pad = -wav.shape[-1] % self.frame_size
        wav = torch.nn.functional.pad(wav, (0, pad))
        return self._encode(wav, self.init_encode_state(wav.shape[0]))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = self._check_codes(codes)
        if codes.shape[-1] == 0:
            raise CodecInputError("no frames to decode")
        return self._decode(codes, self.init_decode_state(codes.shape[0]))

    # -- training ------------------------------------------------------------------------------
    def forward(self, wav: torch.Tensor) -> TrainOutput:
        """Reconstruct whole frames through the quantizer (straight-through), for training."""
        wav = self._check_audio(wav, None)
        latent = self.encoder(wav)
        latent = self.downsample(self.encoder_transformer(latent))
        quantized, codes, commit, restarted = self.quantizer.quantize(latent, self.cfg.n_q)
        latent = self.decoder_transformer(self.upsample(quantized))
        return TrainOutput(self.decoder(latent), codes, commit, restarted)
