"""Measuring the bundled model: a speech recognizer over the domain's words, word error rate, answer checks.

The recognizer (pocketsphinx's packaged English acoustic model) gets a bigram
language model estimated from the domain's sentences, not a grammar of whole
answers: a sentence grammar snaps damaged audio onto a valid answer and so
cannot tell good speech from bad. Used by the tests, `bench/answers.py` and `bench/quality.py`;
pocketsphinx and jiwer come with the test extras.
"""
from __future__ import annotations

import math
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from assistant.offline import Question, answer
from assistant.synth.dialogue import Turn, draw_turn, vocabulary
from assistant.synth.scenes import Scene
from assistant.synth.speech import HELD_OUT_VOICES, Voice, espeak, room
from core.audio import dither, resample, to_pcm16

RATE = 16_000
DISCOUNT = 0.5  # absolute discounting of bigram counts; the mass goes to the unigram back-off


def normalise(text: str) -> str:
    return " ".join(text.lower().replace(",", " ").split())


def bigram_arpa(sentences: list[str]) -> str:
    """A back-off bigram language model in ARPA format (log10 probabilities)."""
    unigrams: Counter[str] = Counter()
    bigrams: Counter[tuple[str, str]] = Counter()
    for s in sentences:
        words = ["<s>", *normalise(s).split(), "</s>"]
        unigrams.update(words)
        bigrams.update(zip(words, words[1:]))
    total = sum(c for w, c in unigrams.items() if w != "<s>")
    p1 = {w: (c / total if w != "<s>" else 1e-99) for w, c in unigrams.items()}
    followers: dict[str, list[str]] = {}
    for a, b in bigrams:
        followers.setdefault(a, []).append(b)
    lines = ["\\data\\", f"ngram 1={len(unigrams)}", f"ngram 2={len(bigrams)}", "", "\\1-grams:"]
    for w in sorted(unigrams):
        after = followers.get(w, [])
        if after:
            left = DISCOUNT * len(after) / unigrams[w]
            backoff = math.log10(left / max(1 - sum(p1[b] for b in after), 1e-9))
        else:
            backoff = 0.0
        lines.append(f"{math.log10(p1[w]) if w != '<s>' else -99:.4f} {w} {backoff:.4f}")
    lines += ["", "\\2-grams:"]
    for (a, b), c in sorted(bigrams.items()):
        lines.append(f"{math.log10((c - DISCOUNT) / unigrams[a]):.4f} {a} {b}")
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


class Recognizer:
    def __init__(self, sentences: list[str] | None = None) -> None:
        from pocketsphinx import Decoder

        self._dir = tempfile.TemporaryDirectory(prefix="tutti-asr-")
        arpa = Path(self._dir.name) / "domain.arpa"
        arpa.write_text(bigram_arpa(sentences if sentences is not None else vocabulary()))
        self.decoder = Decoder(lm=str(arpa), samprate=RATE, logfn="/dev/null")

    def transcribe(self, wav: torch.Tensor, sample_rate: int) -> str:
        x = dither(resample(wav.reshape(-1).float(), sample_rate, RATE), np.random.default_rng(0)).numpy()
        pcm = to_pcm16(x).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return normalise(hyp.hypstr) if hyp is not None else ""


@dataclass(frozen=True)
class Case:
    """A held-out test case: a scene, a question about it in a voice never used in training."""
    scene: Scene
    turn: Turn
    audio: np.ndarray  # half a second of quiet, then the spoken question, at `rate`
    speech_end: float  # seconds into `audio` where the question ends
    image: np.ndarray  # BGR camera frame
    rate: int
    voice: str  # the held-out espeak voice that asks


HELD_OUT_SEED = 20_261_123  # the cases the tests and the documented figures use


def held_out_cases(count: int, seed: int = HELD_OUT_SEED, rate: int = RATE, image_size: int = 224) -> list[Case]:
    rng = np.random.default_rng([seed, 7])
    cases = []
    for _ in range(count):
        scene = Scene.draw(rng)
        turn = draw_turn(scene, rng)
        voice = Voice.draw(rng, HELD_OUT_VOICES)
        speech = room(espeak(turn.question, voice, rate), rng, rate)
        audio = dither(torch.cat([torch.zeros(rate // 2), speech]), rng).numpy()
        cases.append(Case(scene, turn, audio, len(audio) / rate, scene.render(image_size, rng), rate, voice.name))
    return cases


def round_trip(codec, wav: torch.Tensor) -> torch.Tensor:
    """Mono samples through the codec and back, aligned with the input (the decoder's output delay undone)."""
    d = codec.cfg.output_delay  # feed enough quiet to flush the lagging output
    with torch.inference_mode():
        out = codec.decode(codec.encode(torch.nn.functional.pad(wav, (0, d))[None, None]))[0, 0]
    return out[d: d + len(wav)]


def answer_cases(engine, cases: list[Case], listen: float, batch: int = 50) -> list[tuple[np.ndarray, str]]:
    """Held-out cases through the same code as `tutti ask`, `batch` sessions stepped together."""
    results: list[tuple[np.ndarray, str]] = []
    for start in range(0, len(cases), batch):
        part = cases[start: start + batch]
        results += answer(engine, [Question(c.audio, c.rate, [c.image]) for c in part], listen)
    return results


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return float(jiwer.wer([normalise(r) for r in references], [normalise(h) or "<empty>" for h in hypotheses]))


def answer_correct(expected: str, said: str) -> bool:
    """The caption states the expected answer (word for word, case and commas aside)."""
    return normalise(expected) in normalise(said)
