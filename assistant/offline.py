"""The offline driver: spoken questions (with an image or a video) through the same engine as live sessions.

Each question's audio is fed as a session's microphone, a frame's worth per step, its image (or the video's
frames, at the engine's pace) as its camera; the engine steps until the question has been heard and `listen`
seconds more have passed. `tutti ask` is its command line; the held-out evaluation drives it in batches.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import FrameError

from .engine import Engine


def read_image(path: Path) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise FrameError(f"image not found: {path}")
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise FrameError(f"cannot read {path} as an image")
    return frame


def read_video(path: Path, fps: float) -> list[np.ndarray]:
    """Frames of a video file (or stream URL) sampled at `fps`."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FrameError(f"cannot open {path} as a video")
    native = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames, index, keep_every = [], 0, max(1, round(native / fps))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % keep_every == 0:
            frames.append(frame)
        index += 1
    capture.release()
    if not frames:
        raise FrameError(f"{path} holds no frames")
    return frames


@dataclass
class Question:
    audio: np.ndarray  # mono float samples at `rate`
    rate: int
    frames: list[np.ndarray] = field(default_factory=list)  # camera frames, one every other step; a still: one
    moving: bool = False  # frames are a video (one every other step) rather than one still image


def answer(engine: Engine, questions: list[Question], listen: float, seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """Each question as its own session, all stepped together: everything the assistant says from the moment
    the question starts until `listen` seconds after its audio ends (a full-duplex model may start answering
    in a quiet tail of the question's audio), as speech and captions."""
    with ExitStack() as held:
        sessions = [held.enter_context(engine.session(seed=seed + i)) for i in range(len(questions))]
        heard = [int(len(q.audio) / q.rate / engine.frame_seconds) for q in questions]
        audio: list[list[np.ndarray]] = [[] for _ in questions]
        text: list[list[str]] = [[] for _ in questions]
        for step in range(max(heard) + int(listen / engine.frame_seconds)):
            for session, q in zip(sessions, questions):  # the microphone delivers a frame's worth per step
                chunk = round(q.rate * engine.frame_seconds)
                if step * chunk < len(q.audio):
                    session.push_audio(q.audio[step * chunk: (step + 1) * chunk], q.rate)
                if q.frames and (q.moving or step == 0):
                    session.push_video(q.frames[min(step // 2, len(q.frames) - 1)])
            engine.step()
            for i, session in enumerate(sessions):
                out = session.pop_output()
                if step < heard[i] + int(listen / engine.frame_seconds):
                    audio[i].append(out.audio)
                    text[i].append(out.text)
        return [(np.concatenate(a) if a else np.zeros(0, np.float32), "".join(t).strip()) for a, t in zip(audio, text)]
