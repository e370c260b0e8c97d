"""Checkpoint files as every stage keeps them: safetensors with the format and JSON config in the metadata.

A file of ours rebuilds its model alone; public files carry weights only, and a
stage renames their keys to its own by a table of patterns. Any key that is
missing, unexpected or mis-shaped is named in the error, and nothing is loaded.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .errors import CheckpointError

C = TypeVar("C")
M = TypeVar("M", bound=nn.Module)


def rename_keys(tensors: dict[str, torch.Tensor], table: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Rename by the first matching pattern; keys no pattern matches are kept (and reported as unexpected)."""
    compiled = [(re.compile(p), r) for p, r in table]
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        for pattern, repl in compiled:
            if pattern.search(key):
                key = pattern.sub(repl, key)
                break
        out[key] = value
    return out


def read_safetensors(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                     keep: Callable[[str, dict[str, str]], bool] | None = None
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (those that `keep(name, metadata)` accepts, if given) and metadata of a safetensors file, with a
    CheckpointError for anything unreadable. Tensors are read one at a time straight onto `device`,
    floating-point ones converted to `dtype` (if given) as they come, so the weights are never held at two
    precisions at once."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            tensors = {}
            for key in f.keys():
                if keep is not None and not keep(key, metadata):
                    continue
                value = f.get_tensor(key)
                tensors[key] = value.to(dtype) if dtype is not None and value.is_floating_point() else value
        return tensors, metadata
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot read {path} as safetensors (corrupt or truncated?): {e}") from None


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")


def build(factory: Callable[[], M], tensors: dict[str, torch.Tensor], source: str) -> M:
    """The model `factory` makes, holding `tensors` as its weights. It is made on the meta device and the tensors
    become its parameters, so no weights are allocated twice (a 7B model is never materialised in fp32 on the
    way to bf16). Every mismatch is named and nothing is loaded on error. Buffers a model computes rather than
    stores are made on the CPU by its constructor; move the model to the tensors' device after."""
    with torch.device("meta"):
        module = factory()
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = sorted(f"{k} {list(tensors[k].shape)} (expected {list(own[k].shape)})"
                    for k in set(own) & set(tensors) if tensors[k].shape != own[k].shape)
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if shapes:
        problems.append(f"mis-shaped: {_names(shapes)}")
    if problems:
        raise CheckpointError(f"{source} does not fit this model; " + "; ".join(problems))
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{source} holds NaN or infinite values in {_names(sorted(bad))}")
    module.load_state_dict(tensors, strict=True, assign=True)
    return module


def own_config(metadata: dict[str, str], fmt: str, cls: type[C], path: str | Path) -> C | None:
    """The config stored in one of our files (None when the file is not in format `fmt`)."""
    if metadata.get("format") != fmt:
        return None
    try:
        return cls.from_dict(json.loads(metadata["config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable {fmt} config in the file's metadata: {e}") from None


def save_model(model: nn.Module, path: str | Path, fmt: str, dtype: torch.dtype | None = None) -> None:
    """Our format: the weights (floating-point ones at `dtype`, if given) and, in the metadata, `fmt` and the
    model's config (`model.cfg`, a JsonConfig)."""
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
               for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": fmt, "config": model.cfg.to_json()})
