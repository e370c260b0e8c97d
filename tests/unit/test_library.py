"""The library under the CLI: model presets that check their stages fit, the loader, and the session contract."""
from __future__ import annotations

import json

import pytest
import torch

from assistant.engine import Engine
from assistant.loader import Placement, load_model
from assistant.model.config import lm_preset
from assistant.preset import PRESETS, ModelPreset
from codec import preset as codec_preset
from core.checkpoint import read_safetensors
from core.errors import CheckpointError, EngineError, MismatchError
from encoders import vision_preset

from ..conftest import random_codec

TINY_CODEC, TINY_LM, TINY_VISION = codec_preset("tiny"), lm_preset("tiny"), vision_preset("tiny")


def test_the_tiny_preset_is_the_bundled_model():
    tiny = PRESETS["tiny"]
    for name, cfg in (("codec", tiny.codec), ("lm", tiny.lm), ("vision", tiny.vision)):
        _, meta = read_safetensors(tiny.weights / f"{name}.safetensors")
        assert json.loads(meta["config"]) == json.loads(cfg.to_json()), name


def test_public_layouts_fit_together():
    ModelPreset(codec_preset("mimi"), lm_preset("moshi-7b"))
    ModelPreset(codec_preset("mimi"), lm_preset("moshivis-7b"), vision_preset("so400m-448"))


@pytest.mark.parametrize("stages, pool, words", [
    ((TINY_CODEC, TINY_LM.with_(card=2048)), 1, "cards of 2048 codes"),
    ((TINY_CODEC.with_(num_codebooks=4), TINY_LM), 1, "8 user codebooks"),
    ((TINY_CODEC, None, TINY_VISION), 1, "echo mode"),
    ((TINY_CODEC, TINY_LM.with_(vision_dim=0, vision_tokens=0), TINY_VISION), 1, "no vision adapters"),
    ((TINY_CODEC, TINY_LM, TINY_VISION.with_(hidden=96, heads=3)), 1, "width 96"),
    ((TINY_CODEC, TINY_LM.with_(vision_tokens=16), TINY_VISION), 1, "take 16 of width"),
    ((TINY_CODEC, TINY_LM, TINY_VISION), 3, "pool 3 does not divide"),
])
def test_a_preset_names_what_does_not_fit(stages, pool, words):
    with pytest.raises(MismatchError, match=words):
        ModelPreset(*stages, vision_pool=pool)


def test_the_loader_takes_a_dtype_and_checks_names():
    model = load_model("tiny", Placement.of("cpu", "bfloat16"))
    for part in (model.lm, model.vision):
        assert {p.dtype for p in part.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.codec.parameters()} == {torch.float32}  # the codec stays exact
    assert model.preset.lm == model.lm.cfg and model.tokenizer is not None
    echo = load_model("echo")
    assert echo.lm is None and echo.preset.codec == echo.codec.cfg
    with pytest.raises(CheckpointError, match="name one of echo, tiny"):
        load_model("no-such-model")


def test_a_model_directory_needs_an_lm_beside_its_codec(tmp_path):
    (tmp_path / "codec.safetensors").write_bytes((PRESETS["tiny"].weights / "codec.safetensors").read_bytes())
    with pytest.raises(ValueError, match="needs lm.safetensors"):
        load_model(str(tmp_path))


def test_a_transport_s_session_always_leaves():
    engine = Engine(random_codec(), max_sessions=1)
    with pytest.raises(RuntimeError, match="transport failed"):
        with engine.session() as session:
            assert engine.sessions == [session]
            raise RuntimeError("transport failed")
    assert engine.sessions == [] and session.closed
    with engine.session():
        with pytest.raises(EngineError, match="session limit"):
            with engine.session():
                pass
    assert engine.sessions == []


def test_placements_from_the_command_line():
    cpu = Placement.of("cpu")
    assert (cpu.device.type, cpu.dtype, cpu.int8) == ("cpu", torch.float32, False)
    assert Placement.of("cpu", "int8") == Placement(torch.device("cpu"), torch.float32, True)
    default = Placement.of()
    assert default.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert default.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        Placement.of("cpu", "float8")
    with pytest.raises(ValueError, match="unknown device"):
        Placement.of("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            Placement.of("cuda:0")
