"""Recipe (2): contrastive image-caption alignment of the small vision encoder (CLIP-style).

Captions name every shape's colour, kind and place, so the only way to match a
scene to its caption among the batch's others is for the patch tokens to carry
what is where; those tokens are what the LM's cross-attention later reads. The
caption tower is small and discarded after training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoders.frames import to_pixels
from encoders.siglip import SiglipVision, VisionConfig, save_vision, vision_preset

from ..synth.scenes import COLOURS, COLUMNS, ROWS, SHAPES, Scene
from .loop import Schedule, Stage

WORDS = ("<pad>", "a", "on", "the", "at", "in", ",", *COLOURS, *SHAPES, *COLUMNS, *ROWS)


@dataclass(frozen=True)
class VisionRecipe:
    config: VisionConfig
    schedule: Schedule
    batch: int
    text_dim: int = 128


RECIPES = {
    "tiny": VisionRecipe(vision_preset("tiny"), Schedule(steps=3000, lr=5e-4, warmup=200, save_every=250), batch=64),
    "smoke": VisionRecipe(vision_preset("test"), Schedule(steps=4, lr=1e-3, warmup=1, save_every=2, log_every=2),
                          batch=4, text_dim=16),
}


def tokenize_caption(caption: str, length: int = 40) -> torch.Tensor:
    ids = [WORDS.index(w) for w in caption.replace(",", " ,").split()][:length]
    return torch.tensor(ids + [0] * (length - len(ids)))


class CaptionEncoder(nn.Module):
    """Word embeddings with positions, two transformer layers, mean over the words."""

    def __init__(self, dim: int, out: int, length: int = 40) -> None:
        super().__init__()
        self.words = nn.Embedding(len(WORDS), dim, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.proj = nn.Linear(dim, out)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pad = ids == 0
        h = self.layers(self.words(ids) + self.positions[: ids.shape[1]], src_key_padding_mask=pad)
        h = h.masked_fill(pad[..., None], 0).sum(1) / (~pad).sum(1, keepdim=True)
        return self.proj(h)


class Contrastive(nn.Module):
    def __init__(self, cfg: VisionConfig, text_dim: int, embed: int = 128) -> None:
        super().__init__()
        self.vision = SiglipVision(cfg)
        self.image_proj = nn.Linear(cfg.hidden, embed)
        self.captions = CaptionEncoder(text_dim, embed)
        self.log_scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE loss over the batch."""
        image = F.normalize(self.image_proj(self.vision(pixels)).mean(1), dim=-1)
        text = F.normalize(self.captions(ids), dim=-1)
        logits = image @ text.t() * self.log_scale.exp().clamp(max=100)
        labels = torch.arange(len(logits), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def scene_pixels(scene: Scene, size: int, rng: np.random.Generator) -> torch.Tensor:
    """What the encoder sees of a scene in training: a moment of its 2 s clip, drawn at twice the size and
    scaled down as a camera frame would be."""
    return to_pixels(scene.render(size * 2, rng, t=float(rng.uniform(0, 2))), size)


def scene_batch(recipe: VisionRecipe, seed: int, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([seed, step, rank, 2])
    scenes = [Scene.draw(rng) for _ in range(recipe.batch)]
    pixels = torch.stack([scene_pixels(s, recipe.config.image_size, rng) for s in scenes])
    return pixels, torch.stack([tokenize_caption(s.caption()) for s in scenes])


def contrastive_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    return {"infonce": model(batch[0].to(device), batch[1].to(device))}


def stage(recipe_name: str, seed: int, out: Path) -> Stage:
    recipe = RECIPES[recipe_name]

    def export(model: nn.Module) -> None:
        save_vision(model.vision, out / "vision.safetensors")

    return Stage(model=Contrastive(recipe.config, recipe.text_dim), schedule=recipe.schedule,
                 batch=lambda step, rank: scene_batch(recipe, seed, step, rank), loss=contrastive_loss, export=export)
