"""Resampling in torch and audio file conversion."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from core.audio import load_audio, resample, save_audio
from core.errors import CodecInputError


@pytest.mark.parametrize("orig, new", [(44100, 24000), (48000, 24000), (16000, 24000), (8000, 24000), (24000, 48000)])
def test_resampled_sine_matches_the_analytic_sine(orig, new):
    t = torch.arange(2 * orig, dtype=torch.float64) / orig
    y = resample(torch.sin(2 * math.pi * 1000 * t).float(), orig, new)
    assert y.shape[-1] == 2 * new
    expected = torch.sin(2 * math.pi * 1000 * torch.arange(y.shape[-1], dtype=torch.float64) / new).float()
    assert (y - expected)[100:-100].abs().max() < 5e-3


def test_resampling_removes_content_above_the_new_nyquist():
    t = torch.arange(48000) / 48000
    y = resample(torch.sin(2 * math.pi * 15000 * t), 48000, 24000)  # 15 kHz cannot exist at 24 kHz
    assert y[200:-200].abs().max() < 0.02


def test_load_converts_rate_and_channels(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    path = tmp_path / "in.wav"
    sf.write(str(path), stereo, 44100, subtype="PCM_16")
    wav = load_audio(path, 24000)
    assert wav.shape == (1, 24000) and wav.dtype == torch.float32
    assert abs(wav.abs().max().item() - 0.5) < 0.01


def test_save_clips_and_writes_pcm16(tmp_path):
    path = save_audio(tmp_path / "out.wav", torch.tensor([[0.5, 2.0, -3.0]]), 24000)
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == 24000 and data.tolist() == [16384, 32767, -32768]  # libsndfile scales by 32768


def test_bad_files(tmp_path):
    with pytest.raises(CodecInputError, match="not found"):
        load_audio(tmp_path / "absent.wav", 24000)
    bogus = tmp_path / "bogus.wav"
    bogus.write_bytes(b"RIFF....WAVEnonsense")
    with pytest.raises(CodecInputError, match="cannot read"):
        load_audio(bogus, 24000)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1)), 24000)
    with pytest.raises(CodecInputError, match="no samples"):
        load_audio(empty, 24000)
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.array([0.0, np.nan, 0.1]), 24000, subtype="FLOAT")
    with pytest.raises(CodecInputError, match="NaN"):
        load_audio(nan, 24000)


@pytest.mark.parametrize("orig, new", [(48000, 24000), (44100, 24000), (16000, 24000), (24000, 24000)])
def test_streaming_resampler_gives_the_offline_prefix(orig, new):
    from core.audio import StreamingResampler

    x = torch.randn(orig // 2)
    offline = resample(x, orig, new)
    r = StreamingResampler(orig, new)
    rng = np.random.default_rng(0)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 1500))
        parts.append(r(x[i:i + n]))
        i += n
    streamed = torch.cat(parts)
    assert len(offline) - new // 100 <= len(streamed) <= len(offline)  # holds back under 10 ms of look-ahead
    assert torch.allclose(streamed, offline[: len(streamed)], atol=1e-5)
