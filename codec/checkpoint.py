"""Codec checkpoints: Tutti's own format and the public Mimi layout (keys renamed by the table below)."""
from __future__ import annotations

from pathlib import Path

import torch

from core.checkpoint import build, own_config, read_safetensors, rename_keys, save_model

from .config import CodecConfig, preset
from .model import MimiCodec

CODEC_FORMAT = "tutti-codec"

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


def save_codec(model: MimiCodec, path: str | Path) -> None:
    save_model(model, path, CODEC_FORMAT)


def load_codec(path: str | Path, config: CodecConfig | None = None, num_codebooks: int | None = None,
               device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> MimiCodec:
    """Load our format (its config is in the file) or the public Mimi layout (architecture from
    `config`, default the `mimi` preset) straight onto `device` at `dtype`. `num_codebooks` overrides how many
    codebooks encode() uses."""
    tensors, metadata = read_safetensors(path, device, dtype)
    cfg = own_config(metadata, CODEC_FORMAT, CodecConfig, path)
    if cfg is None:
        cfg = config or preset("mimi")
        tensors = rename_keys(tensors, MIMI_KEYS)
    if num_codebooks is not None:
        cfg = cfg.with_(num_codebooks=num_codebooks)
    return build(lambda: MimiCodec(cfg), tensors, str(path)).to(device=device, dtype=dtype).eval()
