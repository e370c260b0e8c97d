"""Recipe (2): contrastive image-caption alignment of the small vision encoder (CLIP-style).

Captions name every shape's colour, kind and place, so matching a scene to its
caption among the batch's others needs the patch tokens to carry what is where;
those tokens are what the LM's cross-attention later reads. In a batch of random
scenes, though, colour and place alone tell the captions apart, so contrast
never teaches shape: the `tiny-cells` recipe adds a read-out of each grid cell's
shape and colour from the tokens. The caption tower and the read-out are small
and discarded after training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoders.frames import to_pixels
from encoders.siglip import SiglipVision, VisionConfig, load_vision, save_vision, vision_preset

from ..synth.scenes import COLOURS, COLUMNS, ROWS, SHAPES, Scene
from .loop import Schedule, Stage

WORDS = ("<pad>", "a", "on", "the", "at", "in", ",", *COLOURS, *SHAPES, *COLUMNS, *ROWS)


@dataclass(frozen=True)
class VisionRecipe:
    config: VisionConfig
    schedule: Schedule
    batch: int
    text_dim: int = 128
    cells: float = 0.0  # weight of the per-cell shape and colour read-out's loss


RECIPES = {
    "tiny": VisionRecipe(vision_preset("tiny"), Schedule(steps=3000, lr=5e-4, warmup=200, save_every=250), batch=64),
    # Goes on from "tiny"'s weights (--init), now also reading each cell's shape and colour from the tokens.
    "tiny-cells": VisionRecipe(vision_preset("tiny"), Schedule(steps=1500, lr=3e-4, warmup=100, save_every=250),
                               batch=64, cells=1.0),
    "smoke": VisionRecipe(vision_preset("test"), Schedule(steps=4, lr=1e-3, warmup=1, save_every=2, log_every=2),
                          batch=4, text_dim=16, cells=1.0),
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


CELLS = 9  # the scenes' 3x3 grid


def cell_labels(scene: Scene) -> torch.Tensor:
    """[CELLS, 2]: each cell's shape and colour as 1 + index, 0 where the cell is empty."""
    labels = torch.zeros(CELLS, 2, dtype=torch.long)
    for item in scene.items:
        labels[item.row * 3 + item.col] = torch.tensor([1 + SHAPES.index(item.shape), 1 + list(COLOURS).index(item.colour)])
    return labels


class CellReadout(nn.Module):
    """A learned query per cell attends over the patch tokens and names the cell's shape and colour. The
    queries can only find a cell by position, so what it is must be in the tokens' content, where the
    LM's cross-attention reads it."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(CELLS, dim) * dim ** -0.5)
        self.keys = nn.Linear(dim, dim)
        self.shape = nn.Linear(dim, 1 + len(SHAPES))
        self.colour = nn.Linear(dim, 1 + len(COLOURS))

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.queries @ self.keys(tokens).transpose(1, 2) * tokens.shape[-1] ** -0.5, -1)
        cells = weights @ tokens  # [B, CELLS, D]
        return (F.cross_entropy(self.shape(cells).flatten(0, 1), labels[..., 0].flatten())
                + F.cross_entropy(self.colour(cells).flatten(0, 1), labels[..., 1].flatten()))


class Contrastive(nn.Module):
    def __init__(self, cfg: VisionConfig, text_dim: int, embed: int = 128) -> None:
        super().__init__()
        self.vision = SiglipVision(cfg)
        self.image_proj = nn.Linear(cfg.hidden, embed)
        self.captions = CaptionEncoder(text_dim, embed)
        self.log_scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))
        self.cells = CellReadout(cfg.hidden)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Symmetric InfoNCE loss over the batch, and the per-cell read-out's loss."""
        tokens = self.vision(pixels)
        image = F.normalize(self.image_proj(tokens).mean(1), dim=-1)
        text = F.normalize(self.captions(ids), dim=-1)
        logits = image @ text.t() * self.log_scale.exp().clamp(max=100)
        targets = torch.arange(len(logits), device=logits.device)
        infonce = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
        return infonce, self.cells(tokens, labels)


def scene_pixels(scene: Scene, size: int, rng: np.random.Generator) -> torch.Tensor:
    """What the encoder sees of a scene in training: a moment of its 2 s clip, drawn at twice the size and
    scaled down as a camera frame would be."""
    return to_pixels(scene.render(size * 2, rng, t=float(rng.uniform(0, 2))), size)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def scene_batch(recipe: VisionRecipe, seed: int, step: int, rank: int) -> Batch:
    """Pixels, caption ids and cell labels of `recipe.batch` scenes drawn for this step and process."""
    rng = np.random.default_rng([seed, step, rank, 2])
    scenes = [Scene.draw(rng) for _ in range(recipe.batch)]
    pixels = torch.stack([scene_pixels(s, recipe.config.image_size, rng) for s in scenes])
    return (pixels, torch.stack([tokenize_caption(s.caption()) for s in scenes]),
            torch.stack([cell_labels(s) for s in scenes]))


def stage(recipe_name: str, seed: int, out: Path, init: Path | None = None) -> Stage:
    recipe = RECIPES[recipe_name]
    model = Contrastive(recipe.config, recipe.text_dim)
    if init is not None:
        start = load_vision(init)
        if start.cfg != recipe.config:
            raise ValueError(f"--init {init}: its configuration is not recipe {recipe_name!r}'s")
        model.vision.load_state_dict(start.state_dict())

    def loss(model: nn.Module, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        device = next(model.parameters()).device
        infonce, cells = model(*(part.to(device) for part in batch))
        # with weight 0 the read-out still runs (DDP wants every parameter used) but teaches nothing
        return {"infonce": infonce, "cells": recipe.cells * cells}

    def export(model: nn.Module) -> None:
        save_vision(model.vision, out / "vision.safetensors")

    return Stage(model=model, schedule=recipe.schedule, batch=lambda step, rank: scene_batch(recipe, seed, step, rank),
                 loss=loss, export=export)
