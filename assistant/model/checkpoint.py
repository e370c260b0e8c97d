"""LM checkpoints: Tutti's own format, the public Moshi LM layout, and MoshiVis adapters.

Public Moshi files store the depth transformer's per-stream attention weights
stacked in one tensor (`in_proj_weight` [steps * 3d, d]); they are split here
into our per-stream modules. Key checks and error messages are shared with the
codec's loader.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from codec.checkpoint import load_into, own_config, read_safetensors, rename_keys
from codec.errors import CheckpointError

from .config import LMConfig, lm_preset
from .layers import quantize_int8_
from .lm import StreamingLM
from .moshivis import is_moshivis, moshivis_to_ours

LM_FORMAT = "tutti-lm"

MOSHI_KEYS: list[tuple[str, str]] = [
    (r"^transformer\.layers\.(\d+)\.self_attn\.(in_proj_weight|in_projs\.0\.weight)$", r"transformer.\1.self_attn.in_proj.weight"),
    (r"^transformer\.layers\.(\d+)\.self_attn\.(out_proj|out_projs\.0)\.weight$", r"transformer.\1.self_attn.out_proj.weight"),
    (r"^transformer\.layers\.(\d+)\.", r"transformer.\1."),
    (r"^depformer\.layers\.(\d+)\.self_attn\.in_projs\.(\d+)\.weight$", r"depformer.\1.in_projs.\2.weight"),
    (r"^depformer\.layers\.(\d+)\.self_attn\.out_projs\.(\d+)\.weight$", r"depformer.\1.out_projs.\2.weight"),
    (r"^depformer\.layers\.(\d+)\.", r"depformer.\1."),
]
_STACKED = re.compile(r"^depformer\.layers\.(\d+)\.self_attn\.(in_proj_weight|out_proj\.weight)$")


def _split_stacked(tensors: dict[str, torch.Tensor], steps: int) -> dict[str, torch.Tensor]:
    """Depth attention weights stacked over the generated streams -> one tensor per stream."""
    out = {}
    for key, value in tensors.items():
        m = _STACKED.match(key)
        if not m:
            out[key] = value
            continue
        if value.shape[0] % steps:
            raise CheckpointError(f"{key} {list(value.shape)} does not split into {steps} streams")
        kind = "in_projs" if m.group(2) == "in_proj_weight" else "out_projs"
        for i, part in enumerate(value.chunk(steps, dim=0)):
            out[f"depformer.layers.{m.group(1)}.self_attn.{kind}.{i}.weight"] = part
    return out


def moshi_to_ours(tensors: dict[str, torch.Tensor], cfg: LMConfig) -> dict[str, torch.Tensor]:
    return rename_keys(_split_stacked(tensors, cfg.dep_q), MOSHI_KEYS)


def save_lm(model: StreamingLM, path: str | Path, dtype: torch.dtype | None = None) -> None:
    """Our format; `dtype` stores floating-point weights at that precision (e.g. fp16 to halve the file)."""
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
               for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": LM_FORMAT, "config": model.cfg.to_json()})


def load_lm(path: str | Path, config: LMConfig | None = None, adapters: str | Path | None = None,
            dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", int8: bool = False) -> StreamingLM:
    """Our format (config in the file), the public Moshi or MoshiVis layout (architecture from `config`,
    default `moshi-7b` / `moshivis-7b`); `adapters` adds the MoshiVis adapters of another file to a Moshi
    file; `int8` quantizes the linear layers' weights."""
    tensors, metadata = read_safetensors(path)
    cfg = own_config(metadata, LM_FORMAT, LMConfig, path)
    if cfg is None:
        cfg = config or lm_preset("moshivis-7b" if is_moshivis(tensors) else "moshi-7b")
        tensors = moshivis_to_ours(tensors, cfg) if is_moshivis(tensors) else moshi_to_ours(tensors, cfg)
    if adapters is not None:
        extra, _ = read_safetensors(adapters)
        tensors.update(moshivis_to_ours(extra, cfg))
    model = StreamingLM(cfg)
    load_into(model, tensors, str(path) if adapters is None else f"{path} + {adapters}")
    model = model.to(device=device, dtype=dtype).eval()
    return quantize_int8_(model) if int8 else model
