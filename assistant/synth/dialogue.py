"""The domain's grammar: spoken questions about a scene and the answer Tutti should give.

Questions only name what the scene makes unambiguous (a colour or shape that
occurs once), so every question has exactly one correct answer.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .scenes import NUMBERS, Item, Scene

SOCIAL = {
    "greet": (("hello", "hi there", "hello tutti", "good morning", "hey tutti"), "hello, I can see and hear you"),
    "hear": (("can you hear me", "are you listening", "do you hear me"), "yes, I can hear you"),
    "thanks": (("thank you", "thanks a lot", "thank you very much"), "you are welcome"),
    "bye": (("goodbye", "bye bye", "see you later"), "goodbye"),
}
INTENTS = (*SOCIAL, "see", "count", "colour", "shape", "where")
SEE = ("what do you see", "what can you see", "what is in front of you", "describe what you see")
COUNT = ("how many shapes are there", "how many shapes do you see", "how many things can you see")


@dataclass(frozen=True)
class Turn:
    intent: str
    question: str
    answer: str


def _plural(shape: str, n: int) -> str:
    return shape if n == 1 else shape + "s"


def describe(scene: Scene) -> str:
    items = sorted(scene.items, key=lambda it: (it.col, it.row))
    if len(items) == 1:
        return f"I see a {items[0].colour} {items[0].shape}"
    if len({it.shape for it in items}) == 1:
        return f"I see {NUMBERS[len(items)]} {_plural(items[0].shape, 2)}"
    if len(items) == 2:
        a, b = items
        return f"I see a {a.colour} {a.shape} and a {b.colour} {b.shape}"
    return f"I see {NUMBERS[len(items)]} shapes"


def count(scene: Scene) -> str:
    n = len(scene.items)
    return f"I see {NUMBERS[n]} {'shape' if n == 1 else 'shapes'}"


def _unique(scene: Scene, attr: str) -> list[Item]:
    values = [getattr(it, attr) for it in scene.items]
    return [it for it in scene.items if values.count(getattr(it, attr)) == 1]


def questions(scene: Scene) -> list[Turn]:
    """Every question this scene can answer, with its answer."""
    turns = [Turn(intent, q, a) for intent, (qs, a) in SOCIAL.items() for q in qs]
    turns += [Turn("see", q, describe(scene)) for q in SEE]
    turns += [Turn("count", q, count(scene)) for q in COUNT]
    if len(scene.items) == 1:
        it = scene.items[0]
        turns += [Turn("colour", q, f"it is {it.colour}") for q in ("what colour is it", "which colour is the shape")]
        turns += [Turn("shape", q, f"it is a {it.shape}") for q in ("what shape is it", "what shape do you see")]
        turns += [Turn("where", q, f"it is {it.where}") for q in ("where is it", "where is the shape")]
    for it in _unique(scene, "shape"):
        turns += [Turn("colour", f"what colour is the {it.shape}", f"the {it.shape} is {it.colour}"),
                  Turn("where", f"where is the {it.shape}", f"the {it.shape} is {it.where}")]
    for it in _unique(scene, "colour"):
        turns += [Turn("shape", f"what shape is the {it.colour} one", f"the {it.colour} one is a {it.shape}"),
                  Turn("where", f"where is the {it.colour} one", f"the {it.colour} one is {it.where}")]
    return turns


def draw_turn(scene: Scene, rng: np.random.Generator, weights: Mapping[str, float] | None = None) -> Turn:
    """One question for the scene: an intent (evenly, or in proportion to `weights`, 1 where unnamed), then a
    phrasing. Held-out sets keep the even draw; a recipe may weight up the intents it answers worst."""
    if weights and (unknown := set(weights) - set(INTENTS)):
        raise ValueError(f"unknown intents {sorted(unknown)}: the grammar has {', '.join(INTENTS)}")
    turns = questions(scene)
    intents = sorted({t.intent for t in turns})
    if weights:
        p = np.array([weights.get(i, 1.0) for i in intents])
        intent = intents[int(rng.choice(len(intents), p=p / p.sum()))]
    else:
        intent = intents[int(rng.integers(len(intents)))]
    choices = [t for t in turns if t.intent == intent]
    return choices[int(rng.integers(len(choices)))]


def _all_turns() -> list[Turn]:
    rng = np.random.default_rng(0)
    return [t for _ in range(3000) for t in questions(Scene.draw(rng))]


def vocabulary() -> list[str]:
    """Every sentence form the grammar can produce (tokenizer and recognizer training text)."""
    return sorted({s for t in _all_turns() for s in (t.question, t.answer)})


def answers() -> set[str]:
    """Every answer the grammar can give."""
    return {t.answer for t in _all_turns()}
