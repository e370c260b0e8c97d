"""`tutti codec` end to end through the real entry point, on real files."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import soundfile as sf

from codec import save_codec

from ..conftest import randomize_codebooks


def tutti(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_for_every_command():
    for args in ([], ["codec"], ["codec", "roundtrip"], ["codec", "encode"], ["codec", "decode"], ["serve"], ["ask"], ["desktop"], ["client"]):
        done = tutti(*args, "--help")
        assert done.returncode == 0 and "usage: tutti" in done.stdout


def test_roundtrip_encode_decode(tmp_path):
    from codec import MimiCodec, preset

    model = randomize_codebooks(MimiCodec(preset("test")).eval())
    ckpt = tmp_path / "codec.safetensors"
    save_codec(model, ckpt)
    t = np.arange(int(1.3 * 16000)) / 16000
    src = tmp_path / "in.wav"
    sf.write(str(src), np.stack([np.sin(2 * np.pi * 300 * t)] * 2, axis=1) * 0.3, 16000)  # stereo, 16 kHz

    done = tutti("codec", "roundtrip", str(src), str(tmp_path / "rt.wav"), "--checkpoint", str(ckpt))
    assert done.returncode == 0, done.stderr
    rt, rate = sf.read(str(tmp_path / "rt.wav"))
    assert rate == 24000 and rt.ndim == 1 and len(rt) == int(1.3 * 24000)

    assert tutti("codec", "encode", str(src), str(tmp_path / "c.codes"), "--checkpoint", str(ckpt)).returncode == 0
    done = tutti("codec", "decode", str(tmp_path / "c.codes"), str(tmp_path / "d.wav"), "--checkpoint", str(ckpt))
    assert done.returncode == 0, done.stderr
    decoded, _ = sf.read(str(tmp_path / "d.wav"))
    np.testing.assert_allclose(decoded, rt, atol=2 / 32768)  # same stream of codes, 16-bit rounding apart

    wrong = tutti("codec", "decode", str(tmp_path / "c.codes"), str(tmp_path / "x.wav"), "--preset", "tiny")
    assert wrong.returncode == 2 and "different codec" in wrong.stderr


def test_errors_are_reported_not_raised(tmp_path):
    done = tutti("codec", "roundtrip", str(tmp_path / "absent.wav"), str(tmp_path / "o.wav"))
    assert done.returncode == 2 and "audio file not found" in done.stderr and "Traceback" not in done.stderr
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    done = tutti("codec", "decode", str(bad), str(tmp_path / "o.wav"))
    assert done.returncode == 2 and "corrupt or truncated" in done.stderr
