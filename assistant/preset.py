"""A model preset: the codec, LM and vision encoder of one model as one object, checked when built.

The check is the one place that knows how the stages meet: the LM reads the
codec's codebooks and writes codes the codec decodes, and its cross-attention
reads the vision encoder's tokens (after pooling). The engine builds one for
whatever it is given, so a mismatch is named before any session starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codec.config import CodecConfig
from codec.config import preset as codec_preset
from core.config import named
from core.errors import MismatchError
from encoders.siglip import VisionConfig, vision_preset

from .model.config import LMConfig, lm_preset
from .weights import BUNDLED


@dataclass(frozen=True)
class ModelPreset:
    codec: CodecConfig
    lm: LMConfig | None = None  # None: echo mode, the codec's round trip
    vision: VisionConfig | None = None
    vision_pool: int = 1  # vision tokens averaged pool x pool before the LM reads them
    weights: Path | None = None  # a directory of trained files for this preset, if there is one

    def __post_init__(self) -> None:
        c, m, v = self.codec, self.lm, self.vision
        if m is not None and m.card != c.bins:
            raise MismatchError(f"the LM (cards of {m.card} codes) does not fit the codec ({c.bins} codes per codebook)")
        if m is not None and (m.n_user > c.num_codebooks or m.dep_q > c.n_q):
            raise MismatchError(f"the LM ({m.n_user} user codebooks, {m.dep_q} generated) does not fit the codec "
                                f"({c.num_codebooks} codebooks encoded, {c.n_q} decodable)")
        if v is None:
            return
        if m is None:
            raise MismatchError("echo mode (no LM) takes no vision encoder")
        if not m.has_vision:
            raise MismatchError("the LM has no vision adapters for the vision encoder's tokens")
        if v.grid % self.vision_pool:
            raise MismatchError(f"vision pool {self.vision_pool} does not divide the token grid {v.grid}")
        tokens = v.tokens // self.vision_pool ** 2
        if (tokens, v.hidden) != (m.vision_tokens, m.vision_dim):
            raise MismatchError(f"the vision encoder gives {tokens} tokens of width {v.hidden}; the LM's vision "
                                f"adapters take {m.vision_tokens} of width {m.vision_dim}")


PRESETS: dict[str, ModelPreset] = {
    # The bundled model: real time on 2 CPU cores, trained by this repository's recipes (docs/training.md).
    "tiny": ModelPreset(codec_preset("tiny"), lm_preset("tiny"), vision_preset("tiny"), weights=BUNDLED),
}


def model_preset(name: str) -> ModelPreset:
    return named(PRESETS, name, "model")
