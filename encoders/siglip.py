"""SigLIP-architecture vision transformer (patch tokens after the post-layernorm; no pooling head).

Every layer can run on a subset of its tokens (`rows`, per session of a batch)
while attending to the cached keys/values of all of them, which is what the
change-only encoder builds on; a dense encode is the same call without a cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import build, own_config, read_safetensors, rename_keys, save_model
from core.config import JsonConfig, named

Cache = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # keys, values [S, H, N, Dh]; which sessions [B]


@dataclass(frozen=True)
class VisionConfig(JsonConfig):
    image_size: int = 448
    patch_size: int = 14
    hidden: int = 1152
    mlp: int = 4304
    layers: int = 27
    heads: int = 16
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if self.hidden % self.heads:
            raise ValueError("hidden must split into heads")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens(self) -> int:
        return self.grid ** 2


VISION_PRESETS: dict[str, VisionConfig] = {
    "so400m-448": VisionConfig(),  # PaliGemma2 / MoshiVis vision tower: 1024 tokens
    "tiny": VisionConfig(image_size=112, patch_size=14, hidden=192, mlp=768, layers=6, heads=3),  # 64 tokens
    "test": VisionConfig(image_size=56, patch_size=7, hidden=32, mlp=64, layers=3, heads=4),  # 64 tokens
}


def vision_preset(name: str) -> VisionConfig:
    return named(VISION_PRESETS, name, "vision")


class Layer(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.heads = cfg.heads
        self.layer_norm1 = nn.LayerNorm(d, eps=cfg.eps)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
        self.layer_norm2 = nn.LayerNorm(d, eps=cfg.eps)
        self.fc1 = nn.Linear(d, cfg.mlp)
        self.fc2 = nn.Linear(cfg.mlp, d)

    def forward(self, x: torch.Tensor, cache: Cache | None = None, rows: torch.Tensor | None = None,
                active: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, n, D] -> [B, n, D]. Without `cache` the tokens attend to each other (a dense encode). With
        cache = (k, v, sessions): k, v [S, H, N, Dh] hold every token's keys and values for S sessions, of which
        x's rows are `sessions` [B]; x's own keys and values are written there first (all N tokens in order
        when `rows` is None, else at `rows` [B, n] where `active` [B, n]), then x attends to all N."""
        h = self.layer_norm1(x)
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(h)), split(self.k_proj(h)), split(self.v_proj(h))
        if cache is not None:
            keys, values, sessions = cache
            if rows is None:  # every token: the cache's rows are now exactly k and v
                keys[sessions], values[sessions] = k, v
            else:
                who = sessions[:, None].expand_as(rows)[active]
                keys.transpose(1, 2)[who, rows[active]] = k.transpose(1, 2)[active]
                values.transpose(1, 2)[who, rows[active]] = v.transpose(1, 2)[active]
                k, v = keys[sessions], values[sessions]
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        x = x + self.out_proj(attn)
        return x + self.fc2(F.gelu(self.fc1(self.layer_norm2(x)), approximate="tanh"))


class SiglipVision(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv2d(3, cfg.hidden, cfg.patch_size, cfg.patch_size)
        self.position_embedding = nn.Embedding(cfg.tokens, cfg.hidden)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
        self.post_layernorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)

    def patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, S, S] in [-1, 1] -> flattened patches [B, N, 3 * p * p] (the conv's layout)."""
        p = self.cfg.patch_size
        return F.unfold(pixels, p, stride=p).transpose(1, 2)

    def embed(self, patches: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        w = self.patch_embedding.weight.flatten(1)
        pos = self.position_embedding.weight if rows is None else self.position_embedding.weight[rows]
        return patches @ w.t() + self.patch_embedding.bias + pos

    def kv_cache(self, sessions: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, room for every token's keys and values of `sessions` sessions (the change-only encoder's)."""
        cfg, p = self.cfg, self.post_layernorm.weight
        shape = (sessions, cfg.heads, cfg.tokens, cfg.hidden // cfg.heads)
        return [(torch.zeros(shape, dtype=p.dtype, device=p.device), torch.zeros(shape, dtype=p.dtype, device=p.device))
                for _ in self.layers]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Dense encode: pixels [B, 3, S, S] in [-1, 1] -> tokens [B, N, D]."""
        x = self.embed(self.patches(pixels))
        for layer in self.layers:
            x = layer(x)
        return self.post_layernorm(x)


# -- checkpoints ---------------------------------------------------------------------------------
VISION_FORMAT = "tutti-vision"
HF_KEYS: list[tuple[str, str]] = [
    (r"^(vision_tower\.)?(vision_model\.)?embeddings\.patch_embedding\.", "patch_embedding."),
    (r"^(vision_tower\.)?(vision_model\.)?embeddings\.position_embedding\.", "position_embedding."),
    (r"^(vision_tower\.)?(vision_model\.)?encoder\.layers\.(\d+)\.self_attn\.", r"layers.\3."),
    (r"^(vision_tower\.)?(vision_model\.)?encoder\.layers\.(\d+)\.mlp\.", r"layers.\3."),
    (r"^(vision_tower\.)?(vision_model\.)?encoder\.layers\.(\d+)\.", r"layers.\3."),
    (r"^(vision_tower\.)?(vision_model\.)?post_layernorm\.", "post_layernorm."),
]


_TOWER = ("embeddings.", "encoder.", "post_layernorm.", "vision_model.embeddings.", "vision_model.encoder.",
          "vision_model.post_layernorm.", "vision_tower.vision_model.")


def _in_tower(key: str, metadata: dict[str, str]) -> bool:
    """Every key of our files; in a public file, the vision tower's but for its pooling head."""
    return metadata.get("format") == VISION_FORMAT or (key.startswith(_TOWER) and ".head." not in key)


def save_vision(model: SiglipVision, path: str | Path) -> None:
    save_model(model, path, VISION_FORMAT)


def load_vision(path: str | Path, config: VisionConfig | None = None, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> SiglipVision:
    """Our format (config in the file), or the Hugging Face SigLIP layout: bare names, `vision_model.`, or
    PaliGemma's `vision_tower.vision_model.` (architecture from `config`, default so400m-448). The pooling head
    (`head.*`) and anything outside the vision tower (e.g. PaliGemma's language model) are ignored."""
    tensors, metadata = read_safetensors(path, device, dtype, keep=_in_tower)
    cfg = own_config(metadata, VISION_FORMAT, VisionConfig, path)
    if cfg is None:
        cfg = config or vision_preset("so400m-448")
        tensors = rename_keys(tensors, HF_KEYS)
    return build(lambda: SiglipVision(cfg), tensors, str(path)).to(device=device, dtype=dtype).eval()
