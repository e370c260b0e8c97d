"""The bundled model, trained: held-out cases (scenes, and voices never used in training) through the same code
as `tutti ask`; the codec's round trip and the spoken answers judged by a speech recognizer."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from assistant.loader import Placement, build_engine
from assistant.synth.dialogue import vocabulary
from assistant.synth.speech import ASSISTANT, HELD_OUT_VOICES, espeak
from core.audio import dither
from tests.support.evaluate import Recognizer, answer_cases, answer_correct, held_out_cases, round_trip, word_error_rate

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
CASES = 200
LISTEN = 4.0
# Floors under what the shipped model measures (docs/benchmarks.md), so that a regression fails: well below
# its accuracy, far above chance.
MIN_ACCURACY = 0.8
MAX_WER_GAP = 0.10  # points of recognizer WER above espeak's own rendering of the same sentences
MAX_CODEC_WER_GAP = 0.05  # points of WER the codec's round trip may add to clean speech


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer()


@pytest.fixture(scope="module")
def answered():
    engine = build_engine("tiny", 50)
    cases = held_out_cases(CASES)
    return engine, cases, answer_cases(engine, cases, LISTEN)


def test_captions_answer_held_out_questions(answered):
    _, cases, results = answered
    assert {c.voice for c in cases} == set(HELD_OUT_VOICES)  # every held-out voice asks, and only they do
    correct = [answer_correct(c.turn.answer, text) for c, (_, text) in zip(cases, results)]
    for c, (_, text) in list(zip(cases, results))[:10]:
        print(f"{c.turn.question!r} -> {text!r} (expected {c.turn.answer!r})")
    accuracy = float(np.mean(correct))
    print(f"caption accuracy on {CASES} held-out cases: {accuracy:.1%}")
    assert accuracy >= MIN_ACCURACY


def test_spoken_answers_say_what_the_captions_say(answered, recognizer):
    """The answer's speech, through the recognizer, against the model's own text stream; espeak's rendering of
    the same sentences is the yardstick."""
    engine, _, results = answered
    rate = engine.codec.sample_rate
    said = [text for _, text in results]
    assert sum(bool(t) for t in said) > 0.9 * len(said)
    clean = word_error_rate(said, [recognizer.transcribe(espeak(t, ASSISTANT, rate), rate) for t in said])
    spoken = word_error_rate(said, [recognizer.transcribe(torch.from_numpy(a), rate) for a, _ in results])
    print(f"recognizer WER against the captions: spoken answers {spoken:.1%}, espeak's rendering {clean:.1%}")
    assert spoken <= clean + MAX_WER_GAP


def test_codec_round_trip_keeps_the_assistant_intelligible(recognizer):
    from assistant.weights import BUNDLED
    from codec import load_codec

    codec = load_codec(BUNDLED / "codec.safetensors")
    rate = codec.sample_rate
    rng = np.random.default_rng(99)
    sentences = [str(s) for s in rng.choice(vocabulary(), 40)]
    clean = [dither(espeak(s, ASSISTANT, rate) * 0.7, rng) for s in sentences]
    decoded = [round_trip(codec, c) for c in clean]
    before = word_error_rate(sentences, [recognizer.transcribe(c, rate) for c in clean])
    after = word_error_rate(sentences, [recognizer.transcribe(x, rate) for x in decoded])
    print(f"recognizer WER on the assistant's voice: clean {before:.1%}, after the codec {after:.1%}")
    assert after <= before + MAX_CODEC_WER_GAP


def test_bfloat16_says_what_float32_says():
    """The LM and vision encoder in bfloat16 (the GPU default) against float32: the same text token at every one
    of 50 steps of held-out dialogues, and the same audio codes (the float32 codec then speaks them alike)."""
    cases = held_out_cases(10)
    steps = 50
    heard: dict[str, tuple[list[list[str]], np.ndarray]] = {}
    for dtype in ("float32", "bfloat16"):
        engine = build_engine("tiny", len(cases), Placement.of("cpu", dtype))
        sessions = [engine.add_session() for _ in cases]
        texts: list[list[str]] = [[] for _ in cases]
        speech = []
        for step in range(steps):
            for s, c in zip(sessions, cases):
                chunk = round(c.rate * engine.frame_seconds)
                s.push_audio(c.audio[step * chunk:(step + 1) * chunk], c.rate)
                if step == 0:
                    s.push_video(c.image)
            engine.step()
            outs = [s.pop_output() for s in sessions]
            for text, out in zip(texts, outs):
                text.append(out.text)
            speech.append(np.stack([out.audio for out in outs]))
        heard[dtype] = texts, np.concatenate(speech, axis=1)
    (exact, reference), (half, audio) = heard["float32"], heard["bfloat16"]
    assert half == exact
    assert any("".join(t).strip() for t in exact)  # the model said something
    assert np.array_equal(audio, reference) and np.abs(reference).max() > 0.01
