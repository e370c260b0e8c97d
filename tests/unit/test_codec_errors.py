"""Bad input and bad checkpoints give typed errors that name the problem."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from codec import CheckpointError, CodecInputError, load_codec, preset, save_codec
from codec.checkpoint import MIMI_KEYS
from codec.model import MimiCodec
from core.checkpoint import rename_keys
from tests.conftest import random_codec


@pytest.fixture
def codec_model() -> MimiCodec:
    """Mimi's SEANet decoder only: the public layout has no iSTFT head."""
    return random_codec()


@pytest.mark.parametrize("wav, message", [
    (torch.zeros(1, 2, 1920), "shaped"),
    (torch.zeros(1920), "shaped"),
    (torch.zeros(1, 1, 1920, dtype=torch.int16), "floats"),
    (torch.full((1, 1, 1920), float("nan")), "NaN"),
    (torch.full((1, 1, 1920), float("inf")), "NaN or infinite"),
    (torch.zeros(1, 1, 0), "empty"),
])
def test_bad_audio_offline(codec_model, wav, message):
    with pytest.raises(CodecInputError, match=message):
        codec_model.encode(wav)


def test_wrong_rate_is_refused(codec_model):
    with pytest.raises(CodecInputError, match="16000 Hz"):
        codec_model.encode(torch.zeros(1, 1, 1920), sample_rate=16000)


def test_partial_frame_to_streaming_step(codec_model):
    state = codec_model.init_encode_state(1)
    with pytest.raises(CodecInputError, match="whole frames"):
        codec_model.encode_step(torch.zeros(1, 1, 1000), state)


@pytest.mark.parametrize("codes, message", [
    (torch.full((1, 4, 2), 32), r"\[0, 32\)"),
    (torch.full((1, 4, 2), -1), r"\[0, 32\)"),
    (torch.zeros(1, 5, 2, dtype=torch.long), "5 codebooks"),
    (torch.zeros(1, 4, 2), "integers"),
    (torch.zeros(4, 2, dtype=torch.long), "shaped"),
])
def test_bad_codes(codec_model, codes, message):
    with pytest.raises(CodecInputError, match=message):
        codec_model.decode(codes)


def test_own_format_round_trip(codec_model, tmp_path):
    path = tmp_path / "codec.safetensors"
    save_codec(codec_model, path)
    loaded = load_codec(path)
    assert loaded.cfg == codec_model.cfg
    wav = torch.randn(1, 1, 3 * codec_model.frame_size) * 0.2
    with torch.inference_mode():
        codes = codec_model.encode(wav)
        assert torch.equal(loaded.encode(wav), codes)
        assert torch.equal(loaded.decode(codes), codec_model.decode(codes))


@pytest.fixture
def public_file(codec_model, tmp_path):
    """Our test model written under the public key names (inverse of the loader's table)."""
    inverse = [
        (r"^(encoder|decoder)\.layers\.(\d+)\.conv1\.conv\.", r"\1.model.\2.block.1.conv.conv."),
        (r"^(encoder|decoder)\.layers\.(\d+)\.conv2\.conv\.", r"\1.model.\2.block.3.conv.conv."),
        (r"^(encoder|decoder)\.layers\.(\d+)\.conv\.", r"\1.model.\2.conv.conv."),
        (r"^decoder\.layers\.(\d+)\.convtr\.", r"decoder.model.\1.convtr.convtr."),
        (r"^(\w+_transformer)\.layers\.(\d+)\.attn\.in_proj\.weight$", r"\1.transformer.layers.\2.self_attn.in_proj_weight"),
        (r"^(\w+_transformer)\.layers\.(\d+)\.attn\.out_proj\.", r"\1.transformer.layers.\2.self_attn.out_proj."),
        (r"^(\w+_transformer)\.layers\.(\d+)\.scale(\d)\.", r"\1.transformer.layers.\2.layer_scale_\3."),
        (r"^(\w+_transformer)\.layers\.(\d+)\.", r"\1.transformer.layers.\2."),
        (r"^downsample\.conv\.", "downsample.conv.conv.conv."),
        (r"^upsample\.convtr\.", "upsample.convtr.convtr.convtr."),
        (r"^quantizer\.(first|rest)\.codebooks\.(\d+)\.initialized", r"quantizer.rvq_\1.vq.layers.\2._codebook._initialized"),
        (r"^quantizer\.(first|rest)\.codebooks\.(\d+)\.", r"quantizer.rvq_\1.vq.layers.\2._codebook."),
        (r"^quantizer\.(first|rest)\.", r"quantizer.rvq_\1."),
    ]
    tensors = rename_keys({k: v.contiguous() for k, v in codec_model.state_dict().items()}, inverse)
    assert rename_keys(tensors, MIMI_KEYS).keys() == codec_model.state_dict().keys()
    path = tmp_path / "public.safetensors"
    save_file(tensors, str(path))
    return path


def test_public_layout_loads(codec_model, public_file):
    loaded = load_codec(public_file, config=preset("test"))
    wav = torch.randn(1, 1, 2 * codec_model.frame_size) * 0.2
    with torch.inference_mode():
        assert torch.equal(loaded.encode(wav), codec_model.encode(wav))


def edit(path, fn):
    tensors = load_file(str(path))
    fn(tensors)
    save_file(tensors, str(path))


def test_missing_key_is_named(public_file):
    edit(public_file, lambda t: t.pop("decoder.model.2.convtr.convtr.weight"))
    with pytest.raises(CheckpointError, match=r"missing keys: decoder\.layers\.2\.convtr\.weight"):
        load_codec(public_file, config=preset("test"))


def test_unexpected_key_is_named(public_file):
    edit(public_file, lambda t: t.__setitem__("encoder.model.99.conv.conv.weight", torch.zeros(1)))
    with pytest.raises(CheckpointError, match=r"unexpected keys: encoder\.layers\.99\.conv\.weight"):
        load_codec(public_file, config=preset("test"))


def test_misshaped_key_is_named(public_file):
    edit(public_file, lambda t: t.__setitem__("downsample.conv.conv.conv.weight", torch.zeros(3, 3, 3)))
    with pytest.raises(CheckpointError, match=r"mis-shaped: downsample\.conv\.weight \[3, 3, 3\]"):
        load_codec(public_file, config=preset("test"))


def test_wrong_config_for_public_file(public_file):
    with pytest.raises(CheckpointError, match="does not fit"):
        load_codec(public_file, config=preset("tiny"))


def test_nan_weights_are_refused(public_file):
    edit(public_file, lambda t: t["encoder.model.0.conv.conv.weight"].fill_(float("nan")))
    with pytest.raises(CheckpointError, match="NaN"):
        load_codec(public_file, config=preset("test"))


def test_truncated_and_corrupt_files(public_file, tmp_path):
    data = public_file.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x07not a checkpoint at all" * 10)
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_codec(path, config=preset("test"))
    with pytest.raises(CheckpointError, match="not found"):
        load_codec(tmp_path / "absent.safetensors")
