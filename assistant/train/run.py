"""Running a stage's recipe to its schedule's end, resumably, alone or as one of torchrun's processes."""
from __future__ import annotations

import importlib
import logging
from dataclasses import replace
from pathlib import Path

import torch

from .loop import Trainer, init_world

STAGES = ("codec", "vision", "lm")
log = logging.getLogger(__name__)


def train(stage_name: str, recipe: str, out: Path, seed: int = 0, device: str = "cpu", steps: int | None = None,
          until: int | None = None, threads: int = 0, workers: int = 0, restart: bool = False,
          plot: Path | None = None, codec: Path | None = None, vision: Path | None = None,
          init: Path | None = None) -> dict[str, float]:
    """Train `stage_name` ("codec", "vision" or "lm") by `recipe` into `out`, from its checkpoint there unless
    `restart`; returns the last logged mean of each loss term (empty when already trained to the end)."""
    if stage_name not in STAGES:
        raise ValueError(f"unknown stage {stage_name!r}; choose from {', '.join(STAGES)}")
    module = importlib.import_module(f"{__package__}.{stage_name}")
    if recipe not in module.RECIPES:
        raise ValueError(f"unknown {stage_name} recipe {recipe!r}; choose from {', '.join(module.RECIPES)}")
    if threads:
        torch.set_num_threads(threads)
    target = torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA GPU is available")
    world = init_world(target)
    if target.type == "cuda":
        target = torch.device("cuda", world.rank % torch.cuda.device_count())
    torch.manual_seed(seed)  # identical initial weights on every process
    if stage_name == "vision":
        inputs: dict = {"init": init}
    elif stage_name == "lm":
        inputs = {"codec": codec, "vision": vision, "init": init, "device": target, "workers": workers}
    elif init:
        raise ValueError("--init is for the vision and lm stages (a codec's decoder-only recipe starts from --codec)")
    else:
        inputs = {"codec": codec}
    stage = module.stage(recipe, seed, out, **inputs)
    schedule = stage.schedule if steps is None else replace(stage.schedule, steps=steps)
    trainer = Trainer(stage_name, stage.model, schedule, out, target, world, stage.export, plot, workers=workers)
    if not restart and trainer.resume() and trainer.step >= schedule.steps:
        log.info("%s: already trained to step %d (raise --steps to go on)", stage_name, trainer.step)
        return {}
    final = trainer.fit(stage.batch, stage.loss, until=until)
    if world.main:
        log.info("%s: done at step %d; %s; weights in %s", stage_name, trainer.step,
                 ", ".join(f"{k} {v:.4f}" for k, v in final.items()), out)
    return final
