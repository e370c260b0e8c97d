"""Procedurally drawn scenes: one to four coloured shapes on a varied, noisy background, still or moving.

Shapes sit in distinct cells of a 3x3 grid (with jitter), so "where" always has
one answer; frames are BGR uint8, as a camera delivers them through OpenCV.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

COLOURS = {"red": (220, 35, 35), "green": (40, 175, 50), "blue": (35, 70, 225), "yellow": (235, 215, 40),
           "purple": (145, 45, 185)}  # RGB
SHAPES = ("circle", "square", "triangle", "star")
COLUMNS = ("left", "middle", "right")
ROWS = ("top", "middle", "bottom")
NUMBERS = ("zero", "one", "two", "three", "four")


@dataclass(frozen=True)
class Item:
    shape: str
    colour: str
    col: int
    row: int
    dx: float  # jitter within the cell, in cell units
    dy: float
    size: float  # radius as a fraction of a cell
    angle: float

    @property
    def where(self) -> str:
        if self.col != 1:
            return f"on the {COLUMNS[self.col]}"
        if self.row != 1:
            return f"at the {ROWS[self.row]}"
        return "in the middle"


@dataclass(frozen=True)
class Scene:
    items: tuple[Item, ...]
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    noise: float
    motion: tuple[float, float]  # cells per second, shared by all items (a moving camera or a slid card)

    @classmethod
    def draw(cls, rng: np.random.Generator, count: int | None = None) -> Scene:
        n = int(rng.integers(1, 5)) if count is None else count
        cells = rng.choice(9, size=n, replace=False)
        items = tuple(Item(str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), int(c % 3), int(c // 3),
                           float(rng.uniform(-0.15, 0.15)), float(rng.uniform(-0.15, 0.15)),
                           float(rng.uniform(0.25, 0.4)), float(rng.uniform(0, 2 * np.pi))) for c in cells)
        grey = lambda: tuple(int(v) for v in rng.integers(60, 200) + rng.integers(-25, 25, 3))  # noqa: E731
        moving = rng.random() < 0.5
        motion = (float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.1, 0.1))) if moving else (0.0, 0.0)
        return cls(items, (grey(), grey()), float(rng.uniform(2, 12)), motion)

    def render(self, size: int, rng: np.random.Generator, t: float = 0.0) -> np.ndarray:
        """The scene at time t seconds as a BGR uint8 image of size x size (camera noise from rng)."""
        ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        top, bottom = (np.array(c, np.float32) for c in self.background)
        img = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3)).copy()
        cell = size / 3
        for it in self.items:
            cx, cy = self.centre(it, t)
            _draw(img, it.shape, (cx * cell, cy * cell), it.size * cell, it.angle, COLOURS[it.colour])
        img += rng.standard_normal(img.shape).astype(np.float32) * self.noise
        return np.clip(img, 0, 255).astype(np.uint8)[..., ::-1].copy()  # RGB -> BGR

    def centre(self, item: Item, t: float = 0.0) -> tuple[float, float]:
        """Where the item's centre is at time t seconds, in cell units from the top left corner (x, y)."""
        return item.col + 0.5 + item.dx + self.motion[0] * t, item.row + 0.5 + item.dy + self.motion[1] * t

    def caption(self) -> str:
        """A description for contrastive training: every item with its colour, shape and place."""
        return ", ".join(f"a {it.colour} {it.shape} {it.where}" for it in self.items)


def _draw(img: np.ndarray, shape: str, centre: tuple[float, float], radius: float, angle: float,
          colour: tuple[int, int, int]) -> None:
    cx, cy = centre
    if shape == "circle":
        cv2.circle(img, (round(cx), round(cy)), round(radius), colour, -1, cv2.LINE_AA)
        return
    corners = {"square": 4, "triangle": 3, "star": 10}[shape]
    turn = angle if shape != "square" else np.pi / 4 + (angle % 1 - 0.5) * 0.3  # squares stay upright, give or take
    a = turn + np.arange(corners) * 2 * np.pi / corners
    r = np.full(corners, radius * (1.0 if shape != "square" else 0.9))
    if shape == "star":
        r[1::2] *= 0.45
    pts = np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)
    cv2.fillPoly(img, [np.round(pts).astype(np.int32)], colour, cv2.LINE_AA)
