"""`tutti ask`: one spoken turn offline through the same engine — the scriptable face of the assistant.

The question's audio is fed as a session's microphone, the image (or the video's frames, at the
engine's pace) as its camera; the engine steps until the question has been heard and `--listen`
seconds more have passed, then the answer's speech is written and its transcript printed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec import CheckpointError, CodecInputError
from codec.audio import load_audio, save_audio
from encoders import FrameError

from ..engine import Engine
from .serve import MODEL_HELP, build_engine

ASK_RATE = 48_000
FRAME_RATE = 12.5  # engine steps per second


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
    sessions = [engine.add_session(seed=seed + i) for i in range(len(questions))]
    try:
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
    finally:
        for session in sessions:
            engine.remove_session(session)


def cmd_ask(args: argparse.Namespace) -> int:
    question = Question(load_audio(args.audio, ASK_RATE)[0].numpy(), ASK_RATE)  # inputs first: a bad file fails fast
    if args.image is not None:
        question.frames = [read_image(args.image)]
    elif args.video is not None:
        question.frames, question.moving = read_video(args.video, fps=FRAME_RATE / 2), True
    engine = build_engine(args.model, 1)
    speech, text = answer(engine, [question], args.listen, args.seed)[0]
    save_audio(args.output, torch.from_numpy(speech)[None], engine.codec.sample_rate)
    print(text)
    print(f"wrote {args.output} ({len(speech) / engine.codec.sample_rate:.2f} s)", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help="one spoken question (+ an image or video) in, spoken answer + transcript out",
                       description=__doc__.splitlines()[0])
    p.add_argument("--audio", type=Path, required=True, help="the spoken question (any audio file libsndfile reads)")
    seen = p.add_mutually_exclusive_group()
    seen.add_argument("--image", type=Path, help="what the camera shows (any image OpenCV reads)")
    seen.add_argument("--video", type=Path, help="a video file or stream URL for the camera")
    p.add_argument("--output", type=Path, default=Path("answer.wav"), help="where the answer's speech goes")
    p.add_argument("--model", default="tiny", help=MODEL_HELP)
    p.add_argument("--listen", type=float, default=3.0, help="seconds to let the assistant answer (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_ask, errors=(CodecInputError, CheckpointError, FrameError, ValueError))
