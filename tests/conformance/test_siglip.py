"""Our ViT against transformers' SiglipVisionModel on the same random tiny weights."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from encoders import load_vision, vision_preset

transformers = pytest.importorskip("transformers")
CFG = vision_preset("test")


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    config = transformers.SiglipVisionConfig(
        hidden_size=CFG.hidden, intermediate_size=CFG.mlp, num_hidden_layers=CFG.layers,
        num_attention_heads=CFG.heads, image_size=CFG.image_size, patch_size=CFG.patch_size)
    return transformers.SiglipVisionModel(config).eval()


@pytest.mark.parametrize("prefix", ["", "vision_model.", "vision_tower.vision_model."])
def test_same_tokens_from_every_published_prefix(reference, tmp_path, prefix):
    # transformers names the in-memory keys with or without `vision_model.` depending on its version
    bare = {k.removeprefix("vision_model."): v.contiguous() for k, v in reference.state_dict().items()}
    tensors = {prefix + k: v for k, v in bare.items()}
    if prefix.startswith("vision_tower"):
        tensors["language_model.lm_head.weight"] = torch.zeros(2, 2)  # rest of a PaliGemma file: ignored
    path = tmp_path / "siglip.safetensors"
    save_file(tensors, str(path))
    ours = load_vision(path, config=CFG)
    pixels = torch.rand(2, 3, CFG.image_size, CFG.image_size) * 2 - 1
    with torch.no_grad():
        expected = reference(pixel_values=pixels).last_hidden_state
        got = ours(pixels)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-5
