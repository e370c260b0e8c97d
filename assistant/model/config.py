"""LM dimensions as a typed dataclass, with presets (the public 7B Moshi layout and small ones)."""
from __future__ import annotations

from dataclasses import dataclass

from core.config import JsonConfig, named


@dataclass(frozen=True)
class LMConfig(JsonConfig):
    # temporal transformer
    dim: int = 4096
    num_heads: int = 32
    num_layers: int = 32
    hidden: int = 11264  # gated FFN width (linear_in has 2 * hidden rows)
    context: int = 3000  # steps of self-attention (ring KV cache)
    rope_max_period: float = 10_000.0
    norm_eps: float = 1e-8
    # streams: text, then dep_q codebooks of the model's audio, then the user's audio codebooks
    text_card: int = 32000
    text_padding_id: int = 3
    text_end_padding_id: int = 0
    card: int = 2048
    n_q: int = 16  # audio streams in (model + user)
    dep_q: int = 8  # audio streams the depth transformer generates (the model's own)
    delays: tuple[int, ...] = (0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1)
    # depth transformer (one set of weights per generated stream)
    depformer_dim: int = 1024
    depformer_heads: int = 16
    depformer_layers: int = 6
    depformer_hidden: int = 2816
    # gated cross-attention to vision tokens (0 = no adapters)
    vision_dim: int = 0  # width of the vision tokens handed to the model
    vision_tokens: int = 0  # tokens per image the per-session key/value cache holds
    gate_hidden: int = 512
    # sampling defaults (a temperature of 0: the most likely token)
    temperature: float = 0.8
    top_k: int = 250
    text_temperature: float = 0.7
    text_top_k: int = 25

    def __post_init__(self) -> None:
        if len(self.delays) != self.n_q + 1:
            raise ValueError(f"need {self.n_q + 1} delays (text + {self.n_q} audio streams), got {len(self.delays)}")
        if not 0 < self.dep_q <= self.n_q:
            raise ValueError("dep_q must lie in [1, n_q]")
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise ValueError("dim must split into heads of even size (RoPE)")
        if self.depformer_dim % self.depformer_heads:
            raise ValueError("depformer_dim must split into depformer_heads")
        if min(self.delays) < 0:
            raise ValueError("delays must be >= 0")
        if bool(self.vision_dim) != bool(self.vision_tokens):
            raise ValueError("vision_dim and vision_tokens go together (both 0 for no vision adapters)")

    def same_architecture(self, other: LMConfig) -> bool:
        """Equal but for the sampling defaults: weights of one fit the other."""
        sampling = ("temperature", "top_k", "text_temperature", "text_top_k")
        return self.with_(**{k: getattr(other, k) for k in sampling}) == other

    @property
    def n_user(self) -> int:
        """Audio codebooks of the user's stream (input only)."""
        return self.n_q - self.dep_q

    @property
    def max_delay(self) -> int:
        return max(self.delays)

    @property
    def has_vision(self) -> bool:
        return self.vision_dim > 0


_TINY_DELAYS = (0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1)

PRESETS: dict[str, LMConfig] = {
    "moshi-7b": LMConfig(),
    "moshivis-7b": LMConfig(vision_dim=1152, vision_tokens=1024),
    # The bundled model's size (11.6M parameters, 23 MB in fp16): the codec's 8 x 1024 codebooks, a small text
    # vocabulary, 64 vision tokens. It answers best with its most likely tokens (temperatures 0).
    "tiny": LMConfig(dim=192, num_heads=4, num_layers=6, hidden=512, context=375, text_card=128, card=1024,
                     depformer_dim=128, depformer_heads=4, depformer_layers=2, depformer_hidden=352,
                     vision_dim=192, vision_tokens=64, gate_hidden=64, delays=_TINY_DELAYS,
                     temperature=0.0, text_temperature=0.0),
    # The smallest model with every part; unit tests.
    "test": LMConfig(dim=32, num_heads=4, num_layers=2, hidden=48, context=10, text_card=40, card=24, n_q=4, dep_q=2,
                     delays=(0, 0, 1, 0, 1), depformer_dim=16, depformer_heads=2, depformer_layers=2,
                     depformer_hidden=24, vision_dim=12, vision_tokens=9, gate_hidden=8),
}


def lm_preset(name: str) -> LMConfig:
    return named(PRESETS, name, "LM")
