"""The synthetic data generator: deterministic from a seed, answers that follow from the scene, real speech."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from assistant.synth.dialogue import describe, draw_turn, questions, vocabulary
from assistant.synth.scenes import COLOURS, Item, Scene
from assistant.synth.speech import (ASSISTANT, HELD_OUT_VOICES, MORE_VOICES, TRAIN_VOICES, Voice, espeak, room,
                                    voiceless_wh, warp)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_scenes_and_turns_are_deterministic_from_the_seed():
    def draw(seed):
        rng = np.random.default_rng(seed)
        scene = Scene.draw(rng)
        return scene, draw_turn(scene, rng), scene.render(64, rng)

    (s1, t1, img1), (s2, t2, img2), (s3, _, img3) = draw(5), draw(5), draw(6)
    assert s1 == s2 and t1 == t2 and np.array_equal(img1, img2)
    assert not np.array_equal(img1, img3)


def test_each_shape_is_drawn_in_its_colour_at_its_place():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scene = Scene.draw(rng)
        img = scene.render(240, rng)[..., ::-1].astype(float)  # BGR -> RGB
        for it in scene.items:
            x, y = round((it.col + 0.5 + it.dx) * 80), round((it.row + 0.5 + it.dy) * 80)
            centre = img[y - 2:y + 3, x - 2:x + 3].reshape(-1, 3).mean(0)
            nearest = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - centre).sum())
            assert nearest == it.colour, (scene, it)


def test_every_question_has_one_answer_that_follows_from_the_scene():
    two = Scene((Item("circle", "red", 0, 1, 0, 0, 0.3, 0), Item("star", "blue", 2, 0, 0, 0, 0.3, 0)),
                ((90, 90, 90), (90, 90, 90)), 3.0, (0.0, 0.0))
    answers = {t.question: t.answer for t in questions(two)}
    assert answers["what colour is the star"] == "the star is blue"
    assert answers["where is the red one"] == "the red one is on the left"
    assert answers["where is the star"] == "the star is on the right"
    assert answers["how many shapes are there"] == "I see two shapes"
    assert describe(two) == "I see a red circle and a blue star"
    assert "what colour is it" not in answers  # ambiguous with two shapes
    same = Scene(two.items[:1] + (Item("circle", "green", 1, 2, 0, 0, 0.3, 0),), two.background, 3.0, (0.0, 0.0))
    assert describe(same) == "I see two circles"
    assert {t.answer for t in questions(same) if t.question == "where is the green one"} == {"the green one is at the bottom"}


def test_intent_weights_shift_the_draw_and_none_keeps_it_even():
    def shares(weights):
        rng = np.random.default_rng(3)
        one = Scene((Item("circle", "red", 0, 1, 0, 0, 0.3, 0),), ((90, 90, 90), (90, 90, 90)), 3.0, (0.0, 0.0))
        drawn = [draw_turn(one, rng, weights).intent for _ in range(4000)]
        return {i: drawn.count(i) / len(drawn) for i in set(drawn)}

    even, weighted = shares(None), shares({"where": 3.0, "shape": 2.0})
    assert len(even) == 9 and all(abs(p - 1 / 9) < 0.025 for p in even.values())
    assert abs(weighted["where"] - 3 / 12) < 0.03 and abs(weighted["shape"] - 2 / 12) < 0.03
    assert abs(weighted["greet"] - 1 / 12) < 0.02
    with pytest.raises(ValueError, match="unknown intents \\['were'\\]"):
        shares({"were": 3.0})


def test_vocabulary_covers_questions_and_answers():
    sentences = vocabulary()
    assert "what shape is the purple one" in sentences and "the purple one is a triangle" in sentences
    assert len(sentences) > 300


@pytest.mark.parametrize("voices", [TRAIN_VOICES, MORE_VOICES])
def test_held_out_accents_and_variants_are_never_in_training_voices(voices):
    parts = lambda names: {part for name in names for part in name.split("+")}  # noqa: E731
    assert not parts(HELD_OUT_VOICES) & parts(voices)
    assert ASSISTANT.name.split("+")[1] not in parts(voices) | parts(HELD_OUT_VOICES)
    assert len(set(voices)) == len(voices)


@needs_espeak
def test_every_training_voice_renders_differently():
    """espeak renders unknown or look-alike variants without complaint: each voice must sound like itself."""
    rendered = {v: espeak("where is it", Voice(v), 16_000) for v in MORE_VOICES if v.startswith("en-us+")}
    distinct = {tuple(w[::50].tolist()) for w in rendered.values()}
    assert len(distinct) == len(rendered)


@needs_espeak
def test_espeak_renders_speech_at_the_asked_rate_and_room_keeps_its_length():
    rng = np.random.default_rng(0)
    short = espeak("hi", ASSISTANT, 16_000)
    long = espeak("what colour is the triangle on the left", Voice.draw(rng, TRAIN_VOICES), 16_000)
    assert 0.1 < len(short) / 16_000 < len(long) / 16_000 < 4
    assert long.abs().max() > 0.05
    wet = room(long, rng, 16_000)
    assert wet.shape == long.shape and torch.isfinite(wet).all()
    assert not torch.allclose(wet / wet.abs().max(), long / long.abs().max(), atol=1e-2)


@needs_espeak
def test_voiceless_wh_starts_wh_words_with_a_quiet_fricative():
    """ "where" said "hw": the voice's own phonemes with espeak's voiceless w, whose first 50 ms are far quieter
    than the voiced w it replaces; other words are left as text."""
    for voice in ("en-us+m1", "en-gb+f2"):
        spelt = voiceless_wh("where is the red one", voice)
        assert spelt.startswith("[[w#") and spelt.endswith("]] is the red one"), spelt
        plain, hw = (espeak(t, Voice(voice), 16_000) for t in ("where is the red one", spelt))
        onset = [float(w[:800].abs().mean()) for w in (plain, hw)]
        assert onset[1] < onset[0] / 3, (voice, onset)
    assert voiceless_wh("thank you very much", "en-us+m1") == "thank you very much"
    assert voiceless_wh("which colour is the shape", "en-029+klatt").startswith("[[w#")


def test_warp_moves_pitch_and_pace_together():
    """A warped tone is longer by the factor it is lower by: one resampling, played at the same rate."""
    rate, seconds = 16_000, 1.0
    tone = torch.sin(2 * torch.pi * 200 * torch.arange(int(rate * seconds)) / rate)
    factors = []
    for seed in range(6):
        out = warp(tone, np.random.default_rng(seed), 0.12, rate)
        factor = len(out) / len(tone)
        peak = np.argmax(np.abs(np.fft.rfft(out.numpy()))) * rate / len(out)
        assert 0.87 < factor < 1.13 and abs(peak * factor - 200) < 3, (factor, peak)
        factors.append(factor)
    assert max(factors) - min(factors) > 0.03
    assert torch.equal(warp(tone, np.random.default_rng(0), 0.0, rate), tone)
    with pytest.raises(ValueError, match="spread"):
        warp(tone, np.random.default_rng(0), 0.5, rate)
