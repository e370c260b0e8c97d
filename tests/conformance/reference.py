"""Build reference (PyPI `moshi`) models from our configs and write them in the public layout."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from codec import CodecConfig


def reference_mimi(cfg: CodecConfig, seed: int = 0):
    """A randomly initialised reference Mimi with our config's dimensions and non-trivial codebooks."""
    from moshi.models import loaders

    seanet = {
        "channels": cfg.channels, "dimension": cfg.dimension, "causal": True, "n_filters": cfg.n_filters,
        "n_residual_layers": cfg.n_residual_layers, "activation": "ELU", "compress": cfg.compress,
        "dilation_base": cfg.dilation_base, "disable_norm_outer_blocks": 0, "kernel_size": cfg.kernel_size,
        "residual_kernel_size": cfg.residual_kernel_size, "last_kernel_size": cfg.last_kernel_size,
        "norm": "none", "pad_mode": "constant", "ratios": list(cfg.ratios), "true_skip": True,
    }
    transformer = {
        "d_model": cfg.dimension, "num_heads": cfg.transformer_heads, "num_layers": cfg.transformer_layers,
        "causal": True, "layer_scale": cfg.layer_scale, "context": cfg.transformer_context, "conv_layout": True,
        "max_period": cfg.rope_max_period, "gating": "none", "norm": "layer_norm", "positional_embedding": "rope",
        "dim_feedforward": cfg.transformer_ffn, "input_dimension": cfg.dimension, "output_dimensions": [cfg.dimension],
    }
    quantizer = {"dimension": cfg.codebook_dim, "n_q": cfg.n_q, "bins": cfg.bins,
                 "input_dimension": cfg.dimension, "output_dimension": cfg.dimension}
    config = {"sample_rate": cfg.sample_rate, "channels": cfg.channels, "frame_rate": cfg.frame_rate,
              "seanet": seanet, "quantizer": quantizer, "transformer": transformer}
    torch.manual_seed(seed)
    model = loaders.get_mimi(None, config, device="cpu", num_codebooks=cfg.num_codebooks)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_scale_1.scale") or name.endswith("layer_scale_2.scale"):
                p.uniform_(0.2, 0.5)  # make the transformers matter
        # Codebooks spread like the latents they quantize, so that codes vary.
        wav = torch.randn(1, cfg.channels, cfg.frame_size * 8) * 0.1
        latent = model._encode_to_unquantized_latent(wav)
        for half in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
            z = half.input_proj(latent).transpose(1, 2).reshape(-1, cfg.codebook_dim)
            for i, layer in enumerate(half.vq.layers):
                book = layer._codebook
                usage = torch.rand(cfg.bins) * 1.5 + 0.5
                scale = z.std() / (i + 1)
                book.embedding_sum.copy_(torch.randn(cfg.bins, cfg.codebook_dim) * scale * usage[:, None])
                book.cluster_usage.copy_(usage)
                book._initialized.fill_(1.0)
                book.register_buffer("_embedding", None, persistent=False)
    return model.eval()


def save_public_layout(model: torch.nn.Module, path: Path) -> Path:
    """The reference's state dict under the key names of the published files."""
    tensors = {}
    for key, value in model.state_dict().items():
        key = key.replace("self_attn.in_projs.0.weight", "self_attn.in_proj_weight")
        key = key.replace("self_attn.out_projs.0.weight", "self_attn.out_proj.weight")
        tensors[key] = value.contiguous()
    save_file(tensors, str(path))
    return path
