"""The bundled model on held-out cases (scenes and voices never used in training), run through the same
code as `tutti ask`: how often the caption gives the right answer (per intent and per held-out accent), how
intelligible the spoken answer is (recognizer WER of the spoken answer against its own caption, beside espeak's
rendering of the captions), and how soon the answer starts.

    .venv/bin/python bench/answers.py [--cases 200] [--seed 20261123] [--model tiny] [--batch 50] [--no-speech]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.loader import build_engine  # noqa: E402
from assistant.synth.speech import ASSISTANT, espeak  # noqa: E402
from tests.support.evaluate import (  # noqa: E402
    HELD_OUT_SEED,
    Recognizer,
    answer_cases,
    answer_correct,
    held_out_cases,
    word_error_rate,
)

LISTEN = 4.0


def first_sound(audio: np.ndarray, rate: int, threshold: float = 0.02) -> float | None:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return None if not len(loud) else loud[0] / rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED,
                        help="which held-out cases (the tests use the default; 7 gives the second set in docs/)")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch", type=int, default=50, help="sessions stepped together")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-speech", action="store_true", help="captions only: skip the recognizer and onsets")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine = build_engine(args.model, args.batch)
    rate = engine.codec.sample_rate
    cases = held_out_cases(args.cases, args.seed)
    results = answer_cases(engine, cases, LISTEN, args.batch)
    by_intent: dict[str, list[bool]] = defaultdict(list)
    by_accent: dict[str, list[bool]] = defaultdict(list)
    for case, (_, text) in zip(cases, results):
        ok = answer_correct(case.turn.answer, text)
        by_intent[case.turn.intent].append(ok)
        by_accent[case.voice.split("+")[0]].append(ok)
    correct = [ok for oks in by_intent.values() for ok in oks]
    print(f"model {args.model}: {len(cases)} held-out cases (seed {args.seed}); "
          f"captions correct {100 * np.mean(correct):.1f}%")
    for intent, oks in sorted(by_intent.items()):
        print(f"  {intent:<7} {100 * np.mean(oks):5.1f}% of {len(oks)}")
    for accent, oks in sorted(by_accent.items()):  # misheard questions gather in one accent or another
        print(f"  asked in {accent}: {100 * np.mean(oks):5.1f}% of {len(oks)}")
    for case, (_, text) in list(zip(cases, results))[:8]:
        print(f"  asked {case.turn.question!r}: expected {case.turn.answer!r}, captioned {text!r}")
    if args.no_speech:
        return
    recognizer = Recognizer()
    said = [text for _, text in results]  # the text stream: what the model says it says
    heard = [recognizer.transcribe(torch.from_numpy(a), rate) for a, _ in results]
    clean = word_error_rate(said, [recognizer.transcribe(espeak(t, ASSISTANT, rate), rate) for t in said])
    print(f"spoken answers against their captions: recognizer WER {100 * word_error_rate(said, heard):.1f}% "
          f"(espeak's own rendering of the captions: {100 * clean:.1f}%); against the expected answers "
          f"{100 * word_error_rate([c.turn.answer for c in cases], heard):.1f}%")
    onsets = [t - c.speech_end for c, (a, _) in zip(cases, results) if (t := first_sound(a, rate)) is not None]
    if onsets:
        print(f"answer audio starts {statistics.median(onsets):.2f} s (median) after the question ends "
              f"({len(onsets)}/{len(results)} answers made a sound; "
              f"{sum(t < 0 for t in onsets)} spoke before the question ended)")


if __name__ == "__main__":
    main()
