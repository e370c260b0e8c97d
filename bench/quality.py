"""Codec quality on held-out speech: PESQ-WB, STOI and the recognizer's word error rate before and after
the round trip, for the assistant's voice (what the decoder must render) and for held-out user voices.

    .venv/bin/python bench/quality.py [--codec assistant/weights/tutti-tiny/codec.safetensors] [--sentences 60]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.synth.dialogue import vocabulary  # noqa: E402
from assistant.synth.speech import ASSISTANT, HELD_OUT_VOICES, Voice, espeak, room  # noqa: E402
from assistant.weights import BUNDLED  # noqa: E402
from codec.checkpoint import load_codec  # noqa: E402
from core.audio import dither  # noqa: E402
from tests.support.evaluate import Recognizer, round_trip, word_error_rate  # noqa: E402


def scores(clean: list[torch.Tensor], decoded: list[torch.Tensor], rate: int) -> tuple[float, float]:
    from pesq import pesq
    from pystoi import stoi

    p = [pesq(rate, c.numpy(), d.numpy(), "wb") for c, d in zip(clean, decoded)]
    s = [stoi(c.numpy(), d.numpy(), rate) for c, d in zip(clean, decoded)]
    return statistics.mean(p), statistics.mean(s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", default=str(BUNDLED / "codec.safetensors"))
    parser.add_argument("--sentences", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    codec = load_codec(args.codec).eval()
    rate = codec.cfg.sample_rate
    rng = np.random.default_rng(args.seed)
    sentences = [str(s) for s in rng.choice(vocabulary(), args.sentences)]
    recognizer = Recognizer()
    print(f"codec {args.codec}: {rate} Hz, {codec.cfg.num_codebooks} codebooks; {len(sentences)} held-out sentences")
    print(f"{'speech':<26} {'PESQ-WB':>7} {'STOI':>5} {'WER clean':>9} {'WER codec':>9}")
    voices = {"assistant voice": lambda: ASSISTANT,
              "held-out user voices": lambda: Voice.draw(rng, HELD_OUT_VOICES)}
    for name, voice in voices.items():
        clean = []
        for s in sentences:
            wav = espeak(s, voice(), rate) * 0.7
            clean.append(dither(room(wav, rng, rate) if name != "assistant voice" else wav, rng))
        decoded = [round_trip(codec, c) for c in clean]
        pesq_wb, stoi_score = scores(clean, decoded, rate)
        wer_clean = word_error_rate(sentences, [recognizer.transcribe(c, rate) for c in clean])
        wer_codec = word_error_rate(sentences, [recognizer.transcribe(d, rate) for d in decoded])
        print(f"{name:<26} {pesq_wb:7.2f} {stoi_score:5.2f} {100 * wer_clean:8.1f}% {100 * wer_codec:8.1f}%", flush=True)


if __name__ == "__main__":
    main()
