"""Change-only sparse visual encoding: re-encode only the patches that changed, for many sessions at once.

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

`SparseBatch` holds that state for a fixed number of sessions (rows) and encodes
the frames of all the sessions that have one in one call per layer: the changed
tokens of every session, padded to the most any session has, with a mask.
`SparseEncoder` is one session's view of it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import FrameError

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


class SparseBatch:
    """The change-only encoder state of `sessions` rows around a shared SiglipVision model."""

    def __init__(self, model: SiglipVision, settings: SparseSettings | None = None, sessions: int = 1) -> None:
        self.model, self.s = model, settings or SparseSettings()
        cfg, p = model.cfg, model.post_layernorm.weight
        if cfg.grid % self.s.pool:
            raise ValueError(f"pool {self.s.pool} must divide the token grid {cfg.grid}")
        zeros = lambda *shape: torch.zeros(*shape, dtype=p.dtype, device=p.device)  # noqa: E731
        self.pixels = zeros(sessions, cfg.tokens, 3 * cfg.patch_size ** 2)  # last encoded patch pixels
        self.inputs = [zeros(sessions, cfg.tokens, cfg.hidden) for _ in range(cfg.layers + 1)]  # + final states
        self.kv = model.kv_cache(sessions)
        self.drift = zeros(sessions, cfg.tokens)
        self.tokens = zeros(sessions, cfg.tokens, cfg.hidden)
        self.started = [False] * sessions
        self.since_refresh = [0] * sessions
        self._dense = self._flops(cfg.tokens, [cfg.tokens] * cfg.layers)

    @property
    def nbytes(self) -> int:
        """Memory the state holds (all rows)."""
        held = [self.pixels, self.drift, self.tokens, *self.inputs, *(t for kv in self.kv for t in kv)]
        return sum(t.numel() * t.element_size() for t in held)

    def reset(self, row: int) -> None:
        """Row `row` starts over (a new session): its next frame is encoded whole."""
        self.started[row], self.since_refresh[row] = False, 0

    def _flops(self, patches: int, rows: list[int]) -> float:
        cfg, n = self.model.cfg, self.model.cfg.tokens
        embed = 2 * patches * 3 * cfg.patch_size ** 2 * cfg.hidden
        per_row = 2 * (4 * cfg.hidden ** 2 + 2 * cfg.hidden * cfg.mlp) + 4 * n * cfg.hidden
        return embed + sum(r * per_row for r in rows)

    @torch.inference_mode()
    def update(self, frames: dict[int, np.ndarray]) -> dict[int, FrameResult | FrameError]:
        """Encode each row's new frame (any OpenCV frame); a frame the encoder cannot take is answered with its
        FrameError, and the other rows are encoded all the same."""
        start = time.perf_counter()
        model, s, cfg = self.model, self.s, self.model.cfg
        results: dict[int, FrameResult | FrameError] = {}
        rows, patches = [], []
        for row, frame in frames.items():
            try:
                pixels = to_pixels(frame, cfg.image_size)[None].to(model.post_layernorm.weight)
            except FrameError as e:
                results[row] = e
                continue
            rows.append(row)
            patches.append(model.patches(pixels)[0])
        if not rows:
            return results
        index = torch.tensor(rows, device=self.drift.device)
        patches_ = torch.stack(patches)
        drifted = (self.drift[index] > s.drift_bound).any(dim=1).tolist()
        diff = (patches_ - self.pixels[index]).abs().mean(dim=2) / 2  # pixels are in [-1, 1]
        moved = diff > s.pixel_threshold
        counts = moved.sum(dim=1).tolist()
        refreshed = [not self.started[row] or bool(s.refresh_every and self.since_refresh[row] >= s.refresh_every)
                     or drifted[i] for i, row in enumerate(rows)]
        exact = s.threshold == 0 and s.pixel_threshold == 0  # any change: the dense encode itself
        dense = [i for i in range(len(rows)) if refreshed[i] or (exact and counts[i] > 0)]
        sparse = [i for i in range(len(rows)) if i not in dense]
        per_layer = {i: [cfg.tokens] * cfg.layers if i in dense else [0] * cfg.layers for i in range(len(rows))}
        changed = {i: torch.arange(cfg.tokens) if i in dense else torch.zeros(0, dtype=torch.long)
                   for i in range(len(rows))}
        if dense:
            self._dense_pass(index[dense], patches_[dense])
        take = min(max([counts[i] for i in sparse], default=0), s.budget or cfg.tokens)
        if take:
            local = torch.tensor(sparse, device=index.device)
            score = diff[local].masked_fill(~moved[local], -1.0)  # most-changed first; unmoved last
            order = score.topk(take, dim=1)
            layers, kept = self._sparse_pass(index[local], patches_[local], order.indices, order.values >= 0)
            for j, i in enumerate(sparse):
                per_layer[i], changed[i] = layers[j], kept[j]
        seconds = time.perf_counter() - start
        for i, row in enumerate(rows):
            flops = self._dense if i in dense else self._flops(min(counts[i], s.budget or counts[i]), per_layer[i])
            self.started[row] = True
            self.since_refresh[row] = 0 if i in dense or flops == self._dense else self.since_refresh[row] + 1
            tokens, cells = self._pool(row, changed[i])
            results[row] = FrameResult(tokens, cells, flops / self._dense, seconds, refreshed[i], per_layer[i])
        return results

    def _dense_pass(self, index: torch.Tensor, patches: torch.Tensor) -> None:
        model = self.model
        x = model.embed(patches)
        for i, (layer, (k, v)) in enumerate(zip(model.layers, self.kv)):
            self.inputs[i][index] = x
            x = layer(x, (k, v, index))
        self.inputs[-1][index] = x
        self.tokens[index] = model.post_layernorm(x)
        self.pixels[index] = patches
        self.drift[index] = 0

    def _sparse_pass(self, index: torch.Tensor, patches: torch.Tensor, rows: torch.Tensor, active: torch.Tensor
                     ) -> tuple[list[list[int]], list[torch.Tensor]]:
        """Sessions `index` [B], their moved patches `rows` [B, M] where `active`: per session, the tokens
        recomputed in each layer and the token indices whose value changed."""
        model, s = self.model, self.s
        local = torch.arange(len(index), device=rows.device)[:, None].expand_as(rows)
        who = index[:, None].expand_as(rows)
        self.pixels[who[active], rows[active]] = patches[local[active], rows[active]]
        x = model.embed(patches[local, rows], rows)  # [B, M, D]
        per_layer = []
        for i, (layer, (k, v)) in enumerate(zip(model.layers, self.kv)):
            old = self.inputs[i][who, rows]
            change = (x - old).norm(dim=-1) / old.norm(dim=-1).clamp(min=1e-6)
            keep = active & (change > s.threshold)
            if s.budget:  # the most-changed `budget` of each session's kept tokens
                top = change.masked_fill(~keep, -1.0).topk(min(s.budget, keep.shape[1]), dim=1).indices
                keep &= torch.zeros_like(keep).scatter_(1, top, True)
            skipped = active & ~keep
            self.drift.index_put_((who[skipped], rows[skipped]), change[skipped], accumulate=True)
            active = keep
            per_layer.append(active.sum(dim=1))
            self.inputs[i][who[active], rows[active]] = x[active]
            x = layer(x, (k, v, index), rows, active)
        self.inputs[-1][who[active], rows[active]] = x[active]
        self.tokens[who[active], rows[active]] = model.post_layernorm(x[active])
        counts = torch.stack(per_layer, dim=1).tolist()
        return counts, [rows[j][active[j]].cpu() for j in range(len(index))]

    def _pool(self, row: int, changed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, g = self.s.pool, self.model.cfg.grid
        tokens = self.tokens[row]
        if p == 1:
            return tokens.clone(), changed.sort().values
        grid = tokens.view(g, g, -1).permute(2, 0, 1)[None]
        pooled = F.avg_pool2d(grid, p)[0].flatten(1).t()
        cells = (changed // g // p) * (g // p) + (changed % g) // p
        return pooled, cells.unique()


class SparseEncoder:
    """One session's change-only encoder: a SparseBatch of one row."""

    def __init__(self, model: SiglipVision, settings: SparseSettings | None = None) -> None:
        self.batch = SparseBatch(model, settings)

    def update(self, frame: np.ndarray) -> FrameResult:
        result = self.batch.update({0: frame})[0]
        if isinstance(result, FrameError):
            raise result
        return result
