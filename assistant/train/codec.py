"""Recipe (1): the codec on synthetic speech.

Half of every batch is the assistant's own voice, clean (what the decoder must
render well); the other half is users' voices with reverberation and noise
(what the encoder must turn into tokens the LM can tell apart). The loss is a
multi-scale log-mel distance plus a little waveform L1 and the quantizer's
commitment; the target is the input delayed by the head's overlap.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from codec.checkpoint import load_codec, save_codec
from codec.config import CodecConfig, preset
from codec.model import MimiCodec, TrainOutput
from codec.spectral import multi_scale_mel_loss
from core.audio import dither

from ..synth.dialogue import vocabulary
from ..synth.speech import ASSISTANT, TRAIN_VOICES, Voice, espeak, room
from .loop import Schedule, Stage, unwrap

WAVE_WEIGHT = 0.1
COMMIT_WEIGHT = 1.0


@dataclass(frozen=True)
class CodecRecipe:
    config: CodecConfig
    schedule: Schedule
    batch: int
    frames: int  # codec frames per training clip
    user_clips: int  # utterances rendered once per run, cropped at random
    assistant_clips: int
    assistant_share: float = 0.5  # of each batch
    decoder_only: bool = False  # fine-tune the decoder of a trained codec (`--codec`); its codes stay fixed


SMOKE = preset("test").with_(sample_rate=16_000, ratios=(8, 5, 4, 2), decoder_head="istft", istft_hop=80, istft_n_fft=320)
RECIPES = {
    "tiny": CodecRecipe(preset("tiny"), Schedule(steps=30_000, lr=1e-3, warmup=500, betas=(0.8, 0.99), save_every=500),
                        batch=8, frames=12, user_clips=1500, assistant_clips=600),
    # Once the LM is trained on a codec's codes, only its decoder (the assistant's voice) may improve.
    "tiny-decoder": CodecRecipe(preset("tiny"), Schedule(steps=20_000, lr=5e-4, warmup=200, betas=(0.8, 0.99)),
                                batch=8, frames=12, user_clips=1500, assistant_clips=600, assistant_share=0.75,
                                decoder_only=True),
    # Seconds, for the smoke tests of the recipe machinery.
    "smoke": CodecRecipe(SMOKE,
                         Schedule(steps=6, lr=1e-3, warmup=2, save_every=3, log_every=2),
                         batch=2, frames=2, user_clips=4, assistant_clips=4),
    "smoke-decoder": CodecRecipe(SMOKE, Schedule(steps=4, lr=1e-3, warmup=1, save_every=2, log_every=2),
                                 batch=2, frames=2, user_clips=4, assistant_clips=4, decoder_only=True),
}


def render_speech(recipe: CodecRecipe, seed: int, cache: Path | None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The run's utterance pools (users, assistant), rendered once and cached beside the checkpoint."""
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=True)
        return saved["user"], saved["assistant"]
    rng = np.random.default_rng(seed)
    sentences = vocabulary()
    sr = recipe.config.sample_rate
    user = [dither(room(espeak(str(rng.choice(sentences)), Voice.draw(rng, TRAIN_VOICES), sr), rng, sr), rng)
            for _ in tqdm(range(recipe.user_clips), "rendering user speech", disable=None)]
    assistant = [dither(espeak(str(rng.choice(sentences)), ASSISTANT, sr) * 0.7, rng)
                 for _ in tqdm(range(recipe.assistant_clips), "rendering assistant speech", disable=None)]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"user": user, "assistant": assistant}, cache)
    return user, assistant


def clip_batch(pools: tuple[list[torch.Tensor], list[torch.Tensor]], recipe: CodecRecipe, seed: int,
               step: int, rank: int) -> torch.Tensor:
    """Random crops [batch, 1, frames * frame_size] of user or assistant speech; short clips padded."""
    rng = np.random.default_rng([seed, step, rank])
    length = recipe.frames * recipe.config.frame_size
    out = torch.zeros(recipe.batch, 1, length)
    for i in range(recipe.batch):
        pool = pools[1 if rng.random() < recipe.assistant_share else 0]
        wav = pool[int(rng.integers(len(pool)))]
        if len(wav) > length:
            start = int(rng.integers(len(wav) - length))
            out[i, 0] = wav[start: start + length]
        else:
            at = int(rng.integers(length - len(wav) + 1))
            out[i, 0, at: at + len(wav)] = wav
            out[i, 0] += torch.from_numpy(rng.standard_normal(length) * 1e-3).float()
    return out


def init_weights(model: MimiCodec) -> MimiCodec:
    """He initialisation of the convolutions, zero biases. PyTorch's default conv init shrinks the
    signal about 0.6x per layer, so a fresh encoder's output barely varies with its input and
    training stalls at the average spectrum (the log-mel loss stays at a constant predictor's)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)) and module.groups == 1:
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


class DecoderFineTune(nn.Module):
    """The decoder side of a trained codec in training; the encoder and codebooks stay as they are,
    so codes an LM was trained on keep their meaning."""

    def __init__(self, codec: MimiCodec) -> None:
        super().__init__()
        self.codec, self.cfg = codec, codec.cfg
        for part in self._fixed():
            part.requires_grad_(False)

    def _fixed(self) -> list[nn.Module]:
        c = self.codec
        return [c.encoder, c.encoder_transformer, c.downsample, c.quantizer]

    def train(self, mode: bool = True) -> DecoderFineTune:
        super().train(mode)
        for part in self._fixed():
            part.eval()  # no codebook EMA updates or restarts
        return self

    def forward(self, wav: torch.Tensor) -> TrainOutput:
        with torch.no_grad():
            codes = self.codec.encode(wav)
        c = self.codec
        audio = c.decoder(c.decoder_transformer(c.upsample(c.quantizer.decode(codes))))
        return TrainOutput(audio, codes, torch.zeros((), device=wav.device), 0.0)


def codec_loss(model: nn.Module, wav: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    codec = unwrap(model)
    out = model(wav.to(next(model.parameters()).device))
    delay = codec.cfg.output_delay
    target = out.audio.new_zeros(out.audio.shape)
    target[..., delay:] = wav.to(target.device)[..., : wav.shape[-1] - delay]
    return {"mel": multi_scale_mel_loss(out.audio, target, codec.cfg.sample_rate),
            "wave": WAVE_WEIGHT * F.l1_loss(out.audio, target),
            "commit": COMMIT_WEIGHT * out.commit_loss}


def stage(recipe_name: str, seed: int, out: Path, codec: Path) -> Stage:
    recipe = RECIPES[recipe_name]
    pools = render_speech(recipe, seed, out / "codec-speech.pt")
    if recipe.decoder_only:
        model: nn.Module = DecoderFineTune(load_codec(codec))
        export = lambda m: save_codec(m.codec, out / "codec.safetensors")  # noqa: E731
    else:
        model = init_weights(MimiCodec(recipe.config))
        export = lambda m: save_codec(m, out / "codec.safetensors")  # noqa: E731
    return Stage(model=model, schedule=recipe.schedule, loss=codec_loss, export=export,
                 batch=lambda step, rank: clip_batch(pools, recipe, seed, step, rank))
