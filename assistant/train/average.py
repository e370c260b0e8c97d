"""Weight averaging of two runs of one lineage (a run and its warm-started successor, or the shipped weights and
a run from them): the mean often generalises better than either end point, and it keeps the earlier weights'
cleaner speech while taking most of the later run's answers (docs/training.md)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from core.checkpoint import read_safetensors

AVERAGED = ("lm.safetensors", "vision.safetensors")  # the codec and tokenizer are frozen in the LM's recipes


def _mean(a: Path, b: Path, weight: float) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(1 - weight) * a + weight * b, tensor by tensor, and a's metadata (its config)."""
    (x, meta), (y, other) = read_safetensors(a), read_safetensors(b)
    if other != meta:
        raise ValueError(f"{a} and {b} hold different models (their configs differ)")
    if x.keys() != y.keys() or any(x[k].shape != y[k].shape for k in x):
        raise ValueError(f"{a} and {b} hold different tensors")
    return {k: torch.lerp(x[k].float(), y[k].float(), weight).to(x[k].dtype) for k in x}, meta


def average_runs(a: Path, b: Path, out: Path, weight: float = 0.5) -> list[str]:
    """Averages each of AVERAGED that `a` holds into `out` (all checked before any is written); returns the
    names written."""
    if not 0 <= weight <= 1:
        raise ValueError(f"--weight must be within [0, 1], got {weight}")
    names = [n for n in AVERAGED if (a / n).exists()]
    if not names:
        raise ValueError(f"{a} holds none of {', '.join(AVERAGED)}")
    missing = [n for n in names if not (b / n).exists()]
    if missing:
        raise ValueError(f"{b} lacks {', '.join(missing)}")
    means = {n: _mean(a / n, b / n, weight) for n in names}
    out.mkdir(parents=True, exist_ok=True)
    for n, (tensors, meta) in means.items():
        save_file(tensors, out / n, metadata=meta)
    return names
