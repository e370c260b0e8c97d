"""Checkpoints: Tutti's own format and the public Mimi layout.

Our format is one safetensors file whose metadata holds `format` and the JSON
`config`, so a file alone rebuilds its model. Public files carry weights only;
their keys are renamed to ours by a table of patterns, and any key that is
missing, unexpected or mis-shaped is named in the error.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import CodecConfig, preset
from .errors import CheckpointError
from .model import MimiCodec

CODEC_FORMAT = "tutti-codec"
C = TypeVar("C")

# Public Mimi key -> our key. Applied in order; the first pattern that matches wins.
MIMI_KEYS: list[tuple[str, str]] = [
    (r"^(encoder|decoder)\.model\.(\d+)\.block\.1\.conv\.conv\.", r"\1.layers.\2.conv1.conv."),
    (r"^(encoder|decoder)\.model\.(\d+)\.block\.3\.conv\.conv\.", r"\1.layers.\2.conv2.conv."),
    (r"^(encoder|decoder)\.model\.(\d+)\.conv\.conv\.", r"\1.layers.\2.conv."),
    (r"^decoder\.model\.(\d+)\.convtr\.convtr\.", r"decoder.layers.\1.convtr."),
    (r"^(\w+_transformer)\.transformer\.layers\.(\d+)\.self_attn\.(in_proj_weight|in_projs\.0\.weight)$",
     r"\1.layers.\2.attn.in_proj.weight"),
    (r"^(\w+_transformer)\.transformer\.layers\.(\d+)\.self_attn\.(out_proj|out_projs\.0)\.weight$",
     r"\1.layers.\2.attn.out_proj.weight"),
    (r"^(\w+_transformer)\.transformer\.layers\.(\d+)\.layer_scale_(\d)\.scale$", r"\1.layers.\2.scale\3.scale"),
    (r"^(\w+_transformer)\.transformer\.layers\.(\d+)\.(norm1|norm2|linear1|linear2)\.", r"\1.layers.\2.\3."),
    (r"^downsample\.conv\.conv\.conv\.weight$", "downsample.conv.weight"),
    (r"^upsample\.convtr\.convtr\.convtr\.weight$", "upsample.convtr.weight"),
    (r"^quantizer\.rvq_(first|rest)\.(input_proj|output_proj)\.weight$", r"quantizer.\1.\2.weight"),
    (r"^quantizer\.rvq_(first|rest)\.vq\.layers\.(\d+)\._codebook\._initialized$", r"quantizer.\1.codebooks.\2.initialized"),
    (r"^quantizer\.rvq_(first|rest)\.vq\.layers\.(\d+)\._codebook\.(embedding_sum|cluster_usage)$",
     r"quantizer.\1.codebooks.\2.\3"),
]


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


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, with a CheckpointError for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot read {path} as safetensors (corrupt or truncated?): {e}") from None


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")


def load_into(module: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy tensors into module's state dict; every mismatch is named, nothing is loaded on error."""
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
    module.load_state_dict(tensors, strict=True)


def own_config(metadata: dict[str, str], fmt: str, cls: type[C], path: str | Path) -> C | None:
    """The config stored in one of our files (None when the file is not in format `fmt`)."""
    if metadata.get("format") != fmt:
        return None
    try:
        return cls.from_dict(json.loads(metadata["config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable {fmt} config in the file's metadata: {e}") from None


def save_codec(model: MimiCodec, path: str | Path) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": CODEC_FORMAT, "config": model.cfg.to_json()})


def load_codec(path: str | Path, config: CodecConfig | None = None, num_codebooks: int | None = None,
               device: str | torch.device = "cpu") -> MimiCodec:
    """Load our format (its config is in the file) or the public Mimi layout (architecture from
    `config`, default the `mimi` preset). `num_codebooks` overrides how many codebooks encode() uses."""
    tensors, metadata = read_safetensors(path)
    cfg = own_config(metadata, CODEC_FORMAT, CodecConfig, path)
    if cfg is None:
        cfg = config or preset("mimi")
        tensors = rename_keys(tensors, MIMI_KEYS)
    if num_codebooks is not None:
        cfg = cfg.with_(num_codebooks=num_codebooks)
    model = MimiCodec(cfg)
    load_into(model, tensors, str(path))
    return model.to(device).eval()
