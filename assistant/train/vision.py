"""Recipe (2): contrastive image-caption alignment of the small vision encoder (CLIP-style).

Captions name every shape's colour, kind and place, so matching a scene to its
caption among the batch's others needs the patch tokens to carry what is where;
those tokens are what the LM's cross-attention later reads. In a batch of random
scenes, though, colour and place alone tell the captions apart, so contrast
never teaches shape: the `tiny-cells` recipe adds a read-out of the shape and
colour under each patch from its token, and `tiny-shapes` reads every patch a shape
covers. The caption tower and the read-out are small and discarded after training.
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

from ..synth.scenes import COLOURS, COLUMNS, ROWS, SHAPES, Item, Scene
from .loop import Schedule, Stage

WORDS = ("<pad>", "a", "on", "the", "at", "in", ",", *COLOURS, *SHAPES, *COLUMNS, *ROWS)


@dataclass(frozen=True)
class VisionRecipe:
    config: VisionConfig
    schedule: Schedule
    batch: int
    text_dim: int = 128
    cells: float = 0.0  # weight of the per-patch shape and colour read-out's loss
    inside: bool = False  # read out every patch whose centre lies inside a shape (`inside_labels`), not only
    # the patches near a cell's centre (`patch_labels`)


RECIPES = {
    "tiny": VisionRecipe(vision_preset("tiny"), Schedule(steps=3000, lr=5e-4, warmup=200, save_every=250), batch=64),
    # Goes on from "tiny"'s weights (--init), now also reading the shape and colour under each patch token.
    "tiny-cells": VisionRecipe(vision_preset("tiny"), Schedule(steps=1500, lr=3e-4, warmup=100, save_every=250),
                               batch=64, cells=1.0),
    # Goes on from "tiny-cells"'s weights: the read-out of every patch a shape covers (and of the background
    # elsewhere) teaches the shapes apart, which the near-centre read-out barely did (see docs/training.md).
    "tiny-shapes": VisionRecipe(vision_preset("tiny"), Schedule(steps=2000, lr=1e-3, warmup=100, save_every=250),
                                batch=64, cells=1.0, inside=True),
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


def item_label(item: Item) -> torch.Tensor:
    """[2]: the item's shape and colour as 1 + index (0 is left for "empty")."""
    return torch.tensor([1 + SHAPES.index(item.shape), 1 + list(COLOURS).index(item.colour)])


def cell_labels(scene: Scene) -> torch.Tensor:
    """[CELLS, 2]: each cell's shape and colour as 1 + index, 0 where the cell is empty."""
    labels = torch.zeros(CELLS, 2, dtype=torch.long)
    for item in scene.items:
        labels[item.row * 3 + item.col] = item_label(item)
    return labels


def patch_centres(grid: int) -> torch.Tensor:
    """[grid]: the patches' centres along an axis, in cell units."""
    return (torch.arange(grid) + 0.5) * 3 / grid


NEAR = 0.2  # a patch is labelled with its cell when its centre lies this close (in cells) to the cell's centre


def patch_labels(scene: Scene, grid: int) -> torch.Tensor:
    """[grid * grid, 2]: for each patch (row-major) the shape and colour of its cell (see `cell_labels`), for
    patches near a cell's centre, which a jittered or sliding shape always covers; -100 (ignored) elsewhere."""
    centres = patch_centres(grid)
    cell = centres.floor().long().clamp(max=2)
    near = (centres - cell - 0.5).abs() <= NEAR
    labels = cell_labels(scene)[(cell[:, None] * 3 + cell[None, :]).flatten()]
    labels[~(near[:, None] & near[None, :]).flatten()] = -100
    return labels


INSIDE = 0.9  # of a shape's radius: a patch centre this close to the shape's centre lies inside any of them


def inside_labels(scene: Scene, grid: int, t: float) -> torch.Tensor:
    """[grid * grid, 2]: for each patch (row-major) the shape and colour (1 + index) of the shape its centre
    lies inside at time t, 0 (background) for the others: dense labels, wherever a shape has moved to."""
    centres = patch_centres(grid)
    labels = torch.zeros(grid, grid, 2, dtype=torch.long)
    for item in scene.items:
        x, y = scene.centre(item, t)
        inside = (centres[None, :] - x) ** 2 + (centres[:, None] - y) ** 2 <= (INSIDE * item.size) ** 2
        labels[inside] = item_label(item)
    return labels.view(-1, 2)


class PatchReadout(nn.Module):
    """Names the shape and colour under each patch token from that token alone, so each token must carry
    what it shows: the content the LM's cross-attention reads."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.shape = nn.Linear(dim, 1 + len(SHAPES))
        self.colour = nn.Linear(dim, 1 + len(COLOURS))

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        flat = tokens.flatten(0, 1)
        return (F.cross_entropy(self.shape(flat), labels[..., 0].flatten(), ignore_index=-100)
                + F.cross_entropy(self.colour(flat), labels[..., 1].flatten(), ignore_index=-100))


class Contrastive(nn.Module):
    def __init__(self, cfg: VisionConfig, text_dim: int, embed: int = 128) -> None:
        super().__init__()
        self.vision = SiglipVision(cfg)
        self.image_proj = nn.Linear(cfg.hidden, embed)
        self.captions = CaptionEncoder(text_dim, embed)
        self.log_scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))
        self.patches = PatchReadout(cfg.hidden)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Symmetric InfoNCE loss over the batch, and the per-patch read-out's loss."""
        tokens = self.vision(pixels)
        image = F.normalize(self.image_proj(tokens).mean(1), dim=-1)
        text = F.normalize(self.captions(ids), dim=-1)
        logits = image @ text.t() * self.log_scale.exp().clamp(max=100)
        targets = torch.arange(len(logits), device=logits.device)
        infonce = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
        return infonce, self.patches(tokens, labels)


def scene_pixels(scene: Scene, size: int, rng: np.random.Generator, t: float | None = None) -> torch.Tensor:
    """What the encoder sees of a scene in training: a moment t of its 2 s clip (drawn from rng if None), drawn
    at twice the size and scaled down as a camera frame would be."""
    return to_pixels(scene.render(size * 2, rng, t=float(rng.uniform(0, 2)) if t is None else t), size)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def labelled_scenes(cfg: VisionConfig, count: int, rng: np.random.Generator, inside: bool) -> tuple[list[Scene], torch.Tensor, torch.Tensor]:
    """`count` scenes drawn from rng, each at a moment of its clip: the scenes, their pixels [count, 3, S, S] and
    patch labels [count, grid², 2] (`inside_labels` if `inside`, else `patch_labels`)."""
    scenes = [Scene.draw(rng) for _ in range(count)]
    pixels, labels = [], []
    for scene in scenes:
        t = float(rng.uniform(0, 2))
        pixels.append(scene_pixels(scene, cfg.image_size, rng, t))
        labels.append(inside_labels(scene, cfg.grid, t) if inside else patch_labels(scene, cfg.grid))
    return scenes, torch.stack(pixels), torch.stack(labels)


def scene_batch(recipe: VisionRecipe, seed: int, step: int, rank: int) -> Batch:
    """Pixels, caption ids and patch labels of `recipe.batch` scenes drawn for this step and process."""
    rng = np.random.default_rng([seed, step, rank, 2])
    scenes, pixels, labels = labelled_scenes(recipe.config, recipe.batch, rng, recipe.inside)
    return pixels, torch.stack([tokenize_caption(s.caption()) for s in scenes]), labels


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
