"""`tutti ask`: one spoken turn offline through the same engine — the scriptable face of the assistant.

The question's audio is fed as a session's microphone, the image (or the video's frames, at the
engine's pace) as its camera; the engine steps until the question has been heard and `--listen`
seconds more have passed, then the answer's speech is written and its transcript printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from codec import CheckpointError, CodecInputError
from codec.audio import load_audio, save_audio
from encoders import FrameError

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


def cmd_ask(args: argparse.Namespace) -> int:
    question = load_audio(args.audio, ASK_RATE)[0].numpy()  # inputs first: a bad file fails fast
    frames: list[np.ndarray] = []
    if args.image is not None:
        frames = [read_image(args.image)]
    elif args.video is not None:
        frames = read_video(args.video, fps=FRAME_RATE / 2)  # a frame every other step
    engine = build_engine(args.model, 1)
    session = engine.add_session(seed=args.seed)
    session.push_audio(question, ASK_RATE)
    steps = int(len(question) / ASK_RATE / engine.frame_seconds) + int(args.listen / engine.frame_seconds)
    heard_steps = int(len(question) / ASK_RATE / engine.frame_seconds)
    audio, text = [], []
    for step in range(steps):
        if frames and (args.video is not None or step == 0):
            session.push_video(frames[min(step // 2, len(frames) - 1)])
        engine.step()
        out = session.pop_output()
        if step >= heard_steps:  # the answer: what the assistant says once the question is over
            audio.append(out.audio)
            text.append(out.text)
    answer = torch.from_numpy(np.concatenate(audio) if audio else np.zeros(0, np.float32))
    save_audio(args.output, answer[None], engine.codec.sample_rate)
    print("".join(text).strip())
    print(f"wrote {args.output} ({len(answer) / engine.codec.sample_rate:.2f} s)", file=sys.stderr)
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
