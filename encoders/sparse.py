"""Change-only sparse visual encoding: re-encode only the patches that changed.

Per session the encoder keeps the pixels it last encoded for each patch, and
for every layer the inputs and keys/values of every token. A new frame:
1. patch change = mean absolute pixel difference against those pixels; patches under
   `pixel_threshold` (camera noise) are treated as unchanged and keep their old pixels;
2. layer by layer, a token is recomputed only if its input moved by more than
   `threshold` (relative L2) since it was last computed; its query reads every
   token's cached keys/values, and its new keys/values replace the cached ones;
3. skipped changes add up per token as drift; a full refresh runs every
   `refresh_every` frames or when a token's drift passes `drift_bound`;
4. `budget` caps the tokens recomputed per layer (most-changed first).
threshold = pixel_threshold = 0 recomputes everything whenever any pixel
changed: exactly the dense encoder. A static scene recomputes nothing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .frames import to_pixels
from .siglip import SiglipVision


@dataclass
class SparseSettings:
    threshold: float = 0.03  # relative change of a token's layer input that triggers a recompute
    pixel_threshold: float = 0.02  # mean absolute pixel change (in [0, 1] units) that marks a patch changed
    refresh_every: int = 150  # frames between full refreshes (0 = never)
    drift_bound: float = 0.5  # accumulated skipped relative change that forces a refresh
    budget: int = 0  # most tokens recomputed per layer and frame (0 = no cap)
    pool: int = 1  # average pool x pool neighbouring tokens for the model (1 = none)


@dataclass
class FrameResult:
    tokens: torch.Tensor  # [N', D] current tokens (pooled if asked)
    changed: torch.Tensor  # indices into tokens whose value changed this frame
    recomputed: float  # FLOPs spent / FLOPs of a dense encode
    seconds: float
    refreshed: bool
    per_layer: list[int] = field(default_factory=list)  # tokens recomputed in each layer


class SparseEncoder:
    """One session's change-only encoder state around a shared SiglipVision model."""

    def __init__(self, model: SiglipVision, settings: SparseSettings | None = None) -> None:
        self.model, self.s = model, settings or SparseSettings()
        cfg = model.cfg
        if cfg.grid % self.s.pool:
            raise ValueError(f"pool {self.s.pool} must divide the token grid {cfg.grid}")
        self.frames = 0
        self.since_refresh = 0
        self.pixels: torch.Tensor | None = None  # [N, 3pp] last encoded patch pixels
        self.inputs: list[torch.Tensor] = []  # per layer [N, D], plus the final hidden states
        self.kv = model.kv_cache(1)
        self.drift = torch.zeros(cfg.tokens)
        self.tokens: torch.Tensor | None = None
        self._dense = self._flops(cfg.tokens, [cfg.tokens] * cfg.layers)

    def _flops(self, patches: int, rows: list[int]) -> float:
        cfg, n = self.model.cfg, self.model.cfg.tokens
        embed = 2 * patches * 3 * cfg.patch_size ** 2 * cfg.hidden
        per_row = 2 * (4 * cfg.hidden ** 2 + 2 * cfg.hidden * cfg.mlp) + 4 * n * cfg.hidden
        return embed + sum(r * per_row for r in rows)

    @torch.inference_mode()
    def update(self, frame: np.ndarray) -> FrameResult:
        start = time.perf_counter()
        model, s, cfg = self.model, self.s, self.model.cfg
        patches = model.patches(to_pixels(frame, cfg.image_size)[None].to(model.post_layernorm.weight))[0]
        self.frames += 1
        refresh = (self.pixels is None or (s.refresh_every and self.since_refresh >= s.refresh_every)
                   or bool((self.drift > s.drift_bound).any()))
        if refresh:
            per_layer = self._dense_pass(patches)
            changed, flops = torch.arange(cfg.tokens), self._dense
        else:
            diff = (patches - self.pixels).abs().mean(dim=1) / 2  # pixels are in [-1, 1]
            moved = torch.nonzero(diff > s.pixel_threshold)[:, 0]
            if s.threshold == 0 and s.pixel_threshold == 0 and moved.numel():
                per_layer = self._dense_pass(patches)
                changed, flops = torch.arange(cfg.tokens), self._dense
            else:
                if s.budget and moved.numel() > s.budget:
                    moved = moved[diff[moved].topk(s.budget).indices]
                per_layer, changed = self._sparse_pass(patches, moved)
                flops = self._flops(moved.numel(), per_layer)
        self.since_refresh = 0 if refresh or flops == self._dense else self.since_refresh + 1
        tokens, changed = self._pool(changed)
        return FrameResult(tokens, changed, flops / self._dense, time.perf_counter() - start, refresh, per_layer)

    def _dense_pass(self, patches: torch.Tensor) -> list[int]:
        model = self.model
        x = model.embed(patches)[None]
        self.inputs = []
        for layer, (k, v) in zip(model.layers, self.kv):
            self.inputs.append(x[0].clone())
            x = layer(x, k, v, None)
        self.inputs.append(x[0].clone())
        self.tokens = model.post_layernorm(x[0])
        self.pixels = patches.clone()
        self.drift.zero_()
        return [model.cfg.tokens] * model.cfg.layers

    def _sparse_pass(self, patches: torch.Tensor, moved: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        model, s = self.model, self.s
        rows = moved
        self.pixels[rows] = patches[rows]
        x = model.embed(patches[rows], rows)
        per_layer = []
        for i, (layer, (k, v)) in enumerate(zip(model.layers, self.kv)):
            if rows.numel() == 0:
                per_layer.append(0)
                continue
            old = self.inputs[i][rows]
            change = (x - old).norm(dim=-1) / old.norm(dim=-1).clamp(min=1e-6)
            keep = change > s.threshold
            if s.budget and int(keep.sum()) > s.budget:
                keep = torch.zeros_like(keep).index_fill_(0, change.topk(s.budget).indices, True)
            self.drift[rows[~keep]] += change[~keep]
            rows, x = rows[keep], x[keep]
            per_layer.append(rows.numel())
            if rows.numel() == 0:
                continue
            self.inputs[i][rows] = x
            x = layer(x[None], k, v, rows)[0]
        if rows.numel():
            self.inputs[-1][rows] = x
            self.tokens[rows] = model.post_layernorm(x)
        return per_layer, rows

    def _pool(self, changed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, g = self.s.pool, self.model.cfg.grid
        if p == 1:
            return self.tokens.clone(), changed.sort().values
        grid = self.tokens.view(g, g, -1).permute(2, 0, 1)[None]
        pooled = F.avg_pool2d(grid, p)[0].flatten(1).t()
        cells = (changed // g // p) * (g // p) + (changed % g) // p
        return pooled, cells.unique()
