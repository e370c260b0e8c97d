"""The training loop every recipe shares: resume, checkpoints, a loss log and plot, progress, DDP.

A recipe supplies a model, `batch(step, rank)` (a pure function of the step,
so a resumed or multi-process run sees exactly the batches a single
uninterrupted run would) and a loss function returning named terms whose sum
is minimised. Launched by `torchrun`, each process trains on its own batches
and gradients are averaged by DistributedDataParallel (gloo on CPU, NCCL on GPU).
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

log = logging.getLogger(__name__)

Batch = Any
LossFn = Callable[[nn.Module, Batch, int], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Schedule:
    steps: int
    lr: float
    warmup: int = 200
    min_lr_fraction: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    clip: float = 1.0
    save_every: int = 500
    log_every: int = 25

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to min_lr_fraction of the peak."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        done = (step - self.warmup) / max(self.steps - self.warmup, 1)
        return self.lr * (self.min_lr_fraction + (1 - self.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself, whether or not DistributedDataParallel wraps it (losses need its config)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass
class Stage:
    """What a recipe hands the trainer."""
    model: nn.Module
    schedule: Schedule
    batch: Callable[[int, int], Batch]
    loss: LossFn
    export: Callable[[nn.Module], None]


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world(device: torch.device) -> World:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise train alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        # a long timeout: processes wait for each other while rendering a recipe's data before the first step
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=3))
    return World(dist.get_rank(), dist.get_world_size())


class Trainer:
    """Runs a recipe's steps from wherever its checkpoint left off, to `schedule.steps`."""

    def __init__(self, stage: str, model: nn.Module, schedule: Schedule, out: Path, device: torch.device,
                 world: World, export: Callable[[nn.Module], None], plot: Path | None = None,
                 show_progress: bool | None = None, workers: int = 0) -> None:
        self.stage, self.schedule, self.out, self.device, self.world = stage, schedule, out, device, world
        self.model = model.to(device)
        self.export, self.plot, self.workers = export, plot, workers
        self.show = sys.stderr.isatty() if show_progress is None else show_progress
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=schedule.lr,
                                           betas=schedule.betas, weight_decay=schedule.weight_decay)
        self.checkpoint = out / f"{stage}.ckpt"
        self.log_path = out / f"{stage}-loss.tsv"
        self.step = 0
        self.wrapped: nn.Module = model
        if world.size > 1:
            self.wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def resume(self) -> bool:
        """Load the checkpoint if there is one; True if training continues from it."""
        if not self.checkpoint.exists():
            return False
        saved = torch.load(self.checkpoint, map_location=self.device, weights_only=False)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.step = int(saved["step"])
        if "rng" in saved:  # checkpoints from before the RNG was saved resume all the same
            torch.set_rng_state(saved["rng"].cpu())  # map_location moved it to the training device
        if self.world.main:
            log.info("%s: resuming from step %d (%s)", self.stage, self.step, self.checkpoint)
        return True

    def _save(self) -> None:
        if not self.world.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                    "rng": torch.get_rng_state()}, tmp)
        tmp.replace(self.checkpoint)  # a run killed mid-save keeps the previous checkpoint
        self.export(self.model)
        if self.plot is not None:
            write_loss_plot(self.log_path, self.plot, f"{self.stage} training loss")

    def fit(self, batch: Callable[[int, int], Batch], loss_fn: LossFn, until: int | None = None) -> dict[str, float]:
        """Train to the schedule's end (or stop at step `until`, to go on later); returns the last logged
        mean of each loss term."""
        sched, world = self.schedule, self.world
        stop = sched.steps if until is None else min(until, sched.steps)
        if self.world.main:
            self.out.mkdir(parents=True, exist_ok=True)
            log.info("%s: training to step %d of %d on %d process(es)", self.stage, stop, sched.steps, world.size)
        sums: dict[str, float] = {}
        last: dict[str, float] = {}
        count, start, first = 0, time.perf_counter(), self.step
        self.wrapped.train()
        with tqdm(desc=self.stage, total=sched.steps, initial=self.step, unit="step",
                  disable=not (self.show and world.main)) as bar:
            for data in self._batches(batch, stop):
                for group in self.optimizer.param_groups:
                    group["lr"] = sched.lr_at(self.step)
                terms = loss_fn(self.wrapped, data, self.step)
                loss = sum(terms.values())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad = torch.nn.utils.clip_grad_norm_(self.model.parameters(), sched.clip)
                if not torch.isfinite(grad):
                    raise FloatingPointError(f"{self.stage}: non-finite gradient at step {self.step}")
                self.optimizer.step()
                self.step += 1
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach())
                count += 1
                if self.step % sched.log_every == 0 or self.step == stop:
                    last = {k: v / count for k, v in sums.items()}
                    sums, count = {}, 0
                    self._log(last, start, first, bar)
                if self.step % sched.save_every == 0 or self.step == stop:
                    self._save()
        return last

    def _batches(self, batch: Callable[[int, int], Batch], stop: int) -> Iterator[Batch]:
        """The batches of steps self.step..stop, drawn ahead by `workers` processes when there are any: a batch
        is a function of its step, so they are the same either way."""
        steps = range(self.step, stop)
        if not self.workers:
            return (batch(step, self.world.rank) for step in steps)
        # fork: batch functions are closures (not picklable); they draw on the CPU only
        return iter(DataLoader(_Steps(batch, steps, self.world.rank), batch_size=None, num_workers=self.workers,
                               prefetch_factor=4, multiprocessing_context="fork"))

    def _log(self, terms: dict[str, float], start: float, first: int, bar: tqdm) -> None:
        """Appends the mean loss terms to the loss log and shows them: on the progress bar when there is one,
        else as a log line (which scripts read the step rate from)."""
        if not self.world.main:
            return
        total = sum(terms.values())
        with self.log_path.open("a") as f:
            f.write(f"{self.step}\t{total:.5f}\t" + "\t".join(f"{k}={v:.5f}" for k, v in terms.items()) + "\n")
        rate = (self.step - first) / max(time.perf_counter() - start, 1e-9)
        detail = " ".join(f"{k} {v:.3f}" for k, v in terms.items())
        if self.show:
            bar.set_postfix_str(f"loss {total:.4f} ({detail}) {rate:.2f} steps/s", refresh=False)
            bar.update(self.step - bar.n)
        else:
            eta = (self.schedule.steps - self.step) / max(rate, 1e-9)
            log.info(f"{self.stage} step {self.step}/{self.schedule.steps} loss {total:.4f} ({detail}) "
                     f"{rate:.2f} steps/s, eta {eta / 60:.0f} min")


class _Steps(Dataset):
    def __init__(self, batch: Callable[[int, int], Batch], steps: range, rank: int) -> None:
        self.batch, self.steps, self.rank = batch, steps, rank

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> Batch:
        return self.batch(self.steps[i], self.rank)


def read_loss_log(path: Path) -> list[tuple[int, float]]:
    rows = []
    for line in path.read_text().splitlines():
        step, total = line.split("\t")[:2]
        rows.append((int(step), float(total)))
    return rows


def write_loss_plot(log_path: Path, svg: Path, title: str, width: int = 640, height: int = 360) -> None:
    """A dependency-free SVG line plot of total loss against step (log scale) from the loss log."""
    rows = read_loss_log(log_path) if log_path.exists() else []
    rows = [(s, v) for s, v in rows if v > 0 and math.isfinite(v)]
    if len(rows) < 2:
        return
    pad = 50
    steps, values = [s for s, _ in rows], [math.log10(v) for _, v in rows]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1
    x = lambda s: pad + (width - 2 * pad) * (s - steps[0]) / max(steps[-1] - steps[0], 1)  # noqa: E731
    y = lambda v: height - pad - (height - 2 * pad) * (v - lo) / (hi - lo)  # noqa: E731
    points = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in zip(steps, values))
    svg.parent.mkdir(parents=True, exist_ok=True)
    svg.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n'
        f'<text x="{width / 2}" y="20" text-anchor="middle">{title}</text>\n'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>\n'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>\n'
        f'<text x="{pad}" y="{height - pad + 18}">{steps[0]}</text>\n'
        f'<text x="{width - pad}" y="{height - pad + 18}" text-anchor="end">step {steps[-1]}</text>\n'
        f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{10 ** hi:.3g}</text>\n'
        f'<text x="{pad - 4}" y="{height - pad}" text-anchor="end">{10 ** lo:.3g}</text>\n'
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{points}"/>\n</svg>\n')
