"""Streaming equals offline; rows are independent; the ring cache keeps memory flat."""
from __future__ import annotations

import pytest
import torch

from core.state import leaves, map_state, reset_rows


def audio(batch: int, frames: int, frame_size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, frames * frame_size, generator=gen) * 0.2


def stream_encode(model, wav, chunk_frames, state=None):
    n = chunk_frames * model.frame_size
    state = state if state is not None else model.init_encode_state(wav.shape[0])
    return torch.cat([model.encode_step(wav[..., s:s + n], state) for s in range(0, wav.shape[-1], n)], dim=-1)


def stream_decode(model, codes, chunk_frames, state=None):
    state = state if state is not None else model.init_decode_state(codes.shape[0])
    return torch.cat([model.decode_step(codes[..., s:s + chunk_frames], state)
                      for s in range(0, codes.shape[-1], chunk_frames)], dim=-1)


@pytest.mark.parametrize("chunk_frames", [1, 2, 3])
@torch.inference_mode()
def test_chunked_encode_gives_offline_codes_exactly(codec_model, chunk_frames):
    wav = audio(2, 12, codec_model.frame_size)
    offline = codec_model.encode(wav)
    assert len(offline.unique()) > 3
    assert torch.equal(stream_encode(codec_model, wav, chunk_frames), offline)


@pytest.mark.parametrize("chunk_frames", [1, 4])
@torch.inference_mode()
def test_chunked_decode_matches_offline(codec_model, chunk_frames):
    codes = codec_model.encode(audio(2, 12, codec_model.frame_size))
    offline = codec_model.decode(codes)
    streamed = stream_decode(codec_model, codes, chunk_frames)
    assert streamed.shape == offline.shape == (2, 1, 12 * codec_model.frame_size)
    assert ((streamed - offline).norm() / offline.norm()).item() < 1e-5


@torch.inference_mode()
def test_reset_row_restarts_that_session_only(codec_model):
    fs = codec_model.frame_size
    wav = audio(3, 8, fs)
    alone = [stream_encode(codec_model, wav[i:i + 1], 1) for i in range(3)]
    state = codec_model.init_encode_state(3)
    first = stream_encode(codec_model, wav[..., : 4 * fs], 1, state)
    reset_rows(state, torch.tensor([False, True, False]))
    rest = stream_encode(codec_model, wav[..., 4 * fs:], 1, state)
    both = torch.cat([first, rest], -1)
    assert torch.equal(both[0], alone[0][0]) and torch.equal(both[2], alone[2][0])
    # Row 1 restarted: its second half equals a fresh stream of that half.
    assert torch.equal(rest[1], stream_encode(codec_model, wav[1:2, :, 4 * fs:], 1)[0])
    assert not torch.equal(rest[1], alone[1][0, :, 4:]), "reset had no effect"


@torch.inference_mode()
def test_rows_join_and_leave_without_changing_others(codec_model):
    fs = codec_model.frame_size
    wav = audio(2, 6, fs, seed=3)
    a_alone = stream_encode(codec_model, wav[:1], 1)
    state = codec_model.init_encode_state(2)  # preallocated rows, as the engine holds its sessions
    codes_a = [codec_model.encode_step(wav[:1, :, :fs * 2], map_state(state, lambda t: t[:1]))]
    # b joins row 1 after two frames: the row is reset in place and stepped with a's.
    reset_rows(state, torch.tensor([False, True]))
    for i in range(2, 5):
        chunk = torch.cat([wav[:1, :, i * fs:(i + 1) * fs], wav[1:, :, (i - 2) * fs:(i - 1) * fs]])
        step = codec_model.encode_step(chunk, state)
        codes_a.append(step[:1])
    # b leaves: a carries on alone on its own row of the state.
    codes_a.append(codec_model.encode_step(wav[:1, :, 5 * fs:], map_state(state, lambda t: t[:1])))
    assert torch.equal(torch.cat(codes_a, -1), a_alone)


@torch.inference_mode()
def test_long_stream_keeps_state_size_constant(codec_model):
    cfg = codec_model.cfg
    frames = 3 * cfg.transformer_context // cfg.resample_stride + 2  # three times the attention context
    wav = audio(1, frames, codec_model.frame_size, seed=5)
    state = codec_model.init_encode_state(1)
    sizes = []
    for i in range(frames):
        codec_model.encode_step(wav[..., i * codec_model.frame_size:(i + 1) * codec_model.frame_size], state)
        sizes.append(sum(t.numel() for t in leaves(state)))
    assert len(set(sizes)) == 1
    assert int(state["transformer"]["end"][0]) == frames * cfg.resample_stride
