"""Speech from espeak-ng: several voices, speeds and pitches, with noise and room-like reverberation.

The assistant always speaks with one clean voice (what the codec's decoder must
render well); users speak with many voices, and the voices of held-out test
cases are never used in training.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from core.audio import resample
from core.errors import TuttiError

ASSISTANT_VOICE = "en-us+klatt3"
TRAIN_VOICES = tuple(f"{lang}+{variant}" for lang in ("en-us", "en-gb", "en-gb-x-rp", "en-029")
                     for variant in ("m1", "m2", "m3", "f1", "f2", "f3", "klatt", "klatt2"))
HELD_OUT_VOICES = tuple(f"{lang}+{variant}" for lang in ("en-gb-scotland", "en-gb-x-gbclan")
                        for variant in ("m4", "f4", "klatt4"))
# Six accents x 27 variants: the held-out voices' accents and variants stay out, and so does the assistant's
# (klatt3); klatt6 is left out because espeak renders it exactly as klatt.
MORE_VOICES = tuple(f"{lang}+{variant}" for lang in ("en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-x-gbcwmd",
                                                     "en-us-nyc")
                    for variant in ("m1", "m2", "m3", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f5", "klatt", "klatt2",
                                    "klatt5", "adam", "Andy", "Annie", "david", "edward", "linda", "Michael", "paul",
                                    "steph", "travis", "Alex", "Gene", "max"))


class SpeechError(TuttiError, RuntimeError):
    """espeak-ng is missing or failed to speak."""


@dataclass(frozen=True)
class Voice:
    name: str
    speed: int = 165  # words per minute
    pitch: int = 50  # 0..99

    @classmethod
    def draw(cls, rng: np.random.Generator, voices: tuple[str, ...]) -> Voice:
        return cls(str(rng.choice(voices)), int(rng.integers(130, 200)), int(rng.integers(25, 75)))


ASSISTANT = Voice(ASSISTANT_VOICE, 165, 50)


def _espeak_ng() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return exe


def espeak(text: str, voice: Voice, sample_rate: int) -> torch.Tensor:
    """Render text to a mono float waveform at sample_rate (trimmed of leading/trailing silence)."""
    args = ["-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch), "--stdout", text]
    run = subprocess.run([_espeak_ng(), *args], capture_output=True, check=False)
    if run.returncode or not run.stdout:
        raise SpeechError(f"espeak-ng failed for voice {voice.name}: {run.stderr.decode(errors='replace').strip()}")
    with wave.open(io.BytesIO(run.stdout)) as w:  # 16-bit mono PCM; the header's length is a streaming placeholder
        rate, data = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    wav = resample(torch.from_numpy(data.astype(np.float32) / 32768), rate, sample_rate)
    loud = (wav.abs() > 0.01).nonzero()
    if len(loud):
        wav = wav[max(int(loud[0]) - sample_rate // 100, 0): int(loud[-1]) + sample_rate // 100]
    return wav


@lru_cache(maxsize=None)
def _phonemes(word: str, voice: str) -> str:
    run = subprocess.run([_espeak_ng(), "-q", "-x", "-v", voice, word], capture_output=True, check=False, text=True)
    if run.returncode or not run.stdout.strip():
        raise SpeechError(f"espeak-ng gave no phonemes for {word!r} in voice {voice}: {run.stderr.strip()}")
    return run.stdout.strip()


def voiceless_wh(text: str, voice: str) -> str:
    """The text with its wh-words spelt in the voice's own phonemes but for a voiceless onset, /ʍ/ (espeak's
    `w#`), as Scottish, Irish and some American speakers say "where" and "what": no training accent does,
    and questions starting so were the ones misheard most (docs/training.md)."""
    said = []
    for word in text.split():
        sounds = _phonemes(word, voice) if word.startswith("wh") else ""
        said.append(f"[[w#{sounds[1:]}]]" if sounds.startswith("w") and not sounds.startswith("w#") else word)
    return " ".join(said)


def room(wav: torch.Tensor, rng: np.random.Generator, sample_rate: int) -> torch.Tensor:
    """Reverberation (an exponentially decaying noise tail), background noise at 15-40 dB SNR, and a level change."""
    rt60 = rng.uniform(0.05, 0.4)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 1.0
    ir *= np.r_[1.0, np.full(n - 1, rng.uniform(0.0, 0.3) / max(np.abs(ir[1:]).sum() ** 0.5, 1e-6))]
    size = 1 << (len(wav) + n - 1).bit_length()  # FFT convolution: 10x faster than np.convolve at these lengths
    x = np.fft.irfft(np.fft.rfft(wav.numpy(), size) * np.fft.rfft(ir, size), size)[: len(wav)]
    x /= max(np.abs(x).max(), 1e-6)
    noise = rng.standard_normal(len(x)) * 10 ** (-rng.uniform(15, 40) / 20) * np.sqrt(np.mean(x ** 2))
    return torch.from_numpy((x + noise) * rng.uniform(0.2, 0.9)).float()


def warp(wav: torch.Tensor, rng: np.random.Generator, spread: float, sample_rate: int) -> torch.Tensor:
    """Plays speech a random factor in [1 - spread, 1 + spread] slower (lower) or faster (higher): pitch, formants
    and pace move together, as with a longer or shorter vocal tract, which gives voices between and beyond
    espeak's variants (held-out accents were misheard more often than anything was misunderstood)."""
    if not 0 <= spread < 0.5:
        raise ValueError(f"warp spread must be in [0, 0.5), got {spread}")
    step = sample_rate // 80  # rates on a 200 Hz grid (at 16 kHz) keep the resampler's kernels small
    return resample(wav, sample_rate, round(sample_rate * rng.uniform(1 - spread, 1 + spread) / step) * step)
