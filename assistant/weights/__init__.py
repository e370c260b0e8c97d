"""Where model weights lie: the bundled tutti-tiny, or a directory of larger checkpoints.

A model directory holds `codec.safetensors` and, for a conversational model, `lm.safetensors`,
`tokenizer.model` and optionally `vision.safetensors` (our format, or the public Mimi / Moshi /
MoshiVis / SigLIP layouts, whose architectures default to the public presets).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import CheckpointError

BUNDLED = Path(__file__).resolve().parent / "tutti-tiny"


@dataclass(frozen=True)
class ModelFiles:
    codec: Path
    lm: Path | None
    tokenizer: Path | None
    vision: Path | None


def model_files(folder: Path) -> ModelFiles:
    """The checkpoint files of a model directory; the codec must be there."""
    if not folder.is_dir():
        raise CheckpointError(f"no model directory {folder}")
    found = {f: folder / f"{f}.safetensors" for f in ("codec", "lm", "vision")}
    if not found["codec"].is_file():
        raise CheckpointError(f"{folder} holds no codec.safetensors")
    tokenizer = folder / "tokenizer.model"
    have = lambda p: p if p.is_file() else None  # noqa: E731
    return ModelFiles(found["codec"], have(found["lm"]), have(tokenizer), have(found["vision"]))
