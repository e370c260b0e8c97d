"""Our codec against the reference Mimi (PyPI moshi) on the same random weights."""
from __future__ import annotations

import pytest
import torch

from codec import load_codec, preset

pytest.importorskip("moshi")
from .reference import reference_mimi, save_public_layout  # noqa: E402

CFG = preset("test")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ref = reference_mimi(CFG)
    path = save_public_layout(ref, tmp_path_factory.mktemp("mimi") / "mimi.safetensors")
    ours = load_codec(path, config=CFG)
    return ref, ours


@pytest.fixture(scope="module")
def speechlike():
    torch.manual_seed(1)
    t = torch.arange(CFG.frame_size * 20) / CFG.sample_rate
    tone = torch.sin(2 * torch.pi * (180 + 90 * torch.sin(2 * torch.pi * 3 * t)) * t)
    wav = torch.stack([0.3 * tone + 0.02 * torch.randn_like(t), 0.1 * torch.randn_like(t)])
    return wav[:, None]


@torch.inference_mode()
def test_offline_codes_and_audio_match(pair, speechlike):
    ref, ours = pair
    wav = speechlike[..., :-321]  # not a whole number of frames: both pad the end
    codes_ref = ref.encode(wav)
    codes = ours.encode(wav)
    assert codes.shape == codes_ref.shape == (2, CFG.num_codebooks, 20)
    assert len(codes_ref.unique()) > 4, "degenerate test: the reference gives nearly constant codes"
    assert torch.equal(codes, codes_ref)
    assert rel(ours.decode(codes_ref), ref.decode(codes_ref)) < 1e-4


@torch.inference_mode()
def test_streaming_matches_reference_streaming(pair, speechlike):
    ref, ours = pair
    frames = 5  # within the transformer context, where the reference's own streaming is exact
    wav = speechlike[..., : frames * CFG.frame_size]
    state = ours.init_encode_state(2)
    with ref.streaming(2):
        for i in range(frames):
            chunk = wav[..., i * CFG.frame_size:(i + 1) * CFG.frame_size]
            assert torch.equal(ours.encode_step(chunk, state), ref.encode(chunk))
    codes = ref.encode(wav)
    state = ours.init_decode_state(2)
    with ref.streaming(2):
        for i in range(frames):
            assert rel(ours.decode_step(codes[..., i:i + 1], state), ref.decode(codes[..., i:i + 1])) < 1e-4


@torch.inference_mode()
def test_streaming_past_context_matches_reference_offline(pair, speechlike):
    """Past the attention context our ring keeps every key the offline mask allows."""
    ref, ours = pair
    wav = speechlike[..., : 20 * CFG.frame_size]
    assert 20 * CFG.resample_stride > CFG.transformer_context
    state = ours.init_encode_state(2)
    codes = torch.cat([ours.encode_step(wav[..., i * CFG.frame_size:(i + 1) * CFG.frame_size], state)
                       for i in range(20)], dim=-1)
    assert torch.equal(codes, ref.encode(wav))
    state = ours.init_decode_state(2)
    audio = torch.cat([ours.decode_step(codes[..., i:i + 1], state) for i in range(20)], dim=-1)
    assert rel(audio, ref.decode(codes)) < 1e-4
