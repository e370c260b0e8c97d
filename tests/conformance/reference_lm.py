"""A reference (PyPI moshi) LMModel with our config's dimensions, written in the public layout."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from assistant.model.config import LMConfig


def reference_lm(cfg: LMConfig, seed: int = 0):
    from moshi.models.lm import LMModel

    dff = cfg.hidden * 3 // 2  # the reference derives the gated width as 2 * dim_feedforward // 3
    dep_dff = cfg.depformer_hidden * 3 // 2
    assert 2 * dff // 3 == cfg.hidden and dff != 4 * cfg.dim and 2 * dep_dff // 3 == cfg.depformer_hidden
    torch.manual_seed(seed)
    model = LMModel(
        delays=list(cfg.delays), n_q=cfg.n_q, dep_q=cfg.dep_q, card=cfg.card, text_card=cfg.text_card,
        dim=cfg.dim, num_heads=cfg.num_heads, num_layers=cfg.num_layers, hidden_scale=dff / cfg.dim,
        norm="rms_norm_f32", existing_text_padding_id=cfg.text_padding_id, context=cfg.context, causal=True,
        layer_scale=None, max_period=cfg.rope_max_period, gating="silu", positional_embedding="rope",
        depformer_dim=cfg.depformer_dim, depformer_dim_feedforward=dep_dff, depformer_num_heads=cfg.depformer_heads,
        depformer_num_layers=cfg.depformer_layers, depformer_layer_scale=None, depformer_multi_linear=True,
        depformer_context=cfg.dep_q, depformer_max_period=cfg.rope_max_period, depformer_gating="silu",
        depformer_pos_emb="none", depformer_weights_per_step=True,
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".alpha"):
                p.uniform_(0.5, 1.5)  # make the norms' gains matter
            elif "depformer." in name:
                p.normal_(0, 0.5 / p.shape[-1] ** 0.5 * 2)  # the reference leaves the depth layers at default init
    return model.eval()


def save_moshi_layout(model: torch.nn.Module, path: Path, dep_q: int) -> Path:
    """The reference's state dict under the published key names (depth attention stacked per stream)."""
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".self_attn.in_projs." in key or ".self_attn.out_projs." in key:
            prefix, kind = key.split(".self_attn.")[0], "in_proj_weight" if ".in_projs." in key else "out_proj.weight"
            stacked = f"{prefix}.self_attn.{kind}"
            if stacked not in out:
                part = "in_projs" if kind == "in_proj_weight" else "out_projs"
                n = dep_q if prefix.startswith("depformer") else 1
                out[stacked] = torch.cat([state[f"{prefix}.self_attn.{part}.{i}.weight"] for i in range(n)]).contiguous()
            continue
        out[key] = value.contiguous()
    save_file(out, str(path))
    return path
