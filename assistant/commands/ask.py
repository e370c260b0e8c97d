"""`tutti ask`: one spoken turn offline through the same engine — the scriptable face of the assistant.

The question's audio is fed as a session's microphone, the image (or the video's frames, at the
engine's pace) as its camera; the engine steps until the question has been heard and `--listen`
seconds more have passed, then the answer's speech is written and its transcript printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from core.audio import load_audio, save_audio
from core.errors import TuttiError

from ..loader import Placement, build_engine
from ..offline import Question, answer, read_image, read_video
from . import add_model_options

ASK_RATE = 48_000
FRAME_RATE = 12.5  # engine steps per second


def cmd_ask(args: argparse.Namespace) -> int:
    question = Question(load_audio(args.audio, ASK_RATE)[0].numpy(), ASK_RATE)  # inputs first: a bad file fails fast
    if args.image is not None:
        question.frames = [read_image(args.image)]
    elif args.video is not None:
        question.frames, question.moving = read_video(args.video, fps=FRAME_RATE / 2), True
    engine = build_engine(args.model, 1, Placement.of(args.device, args.dtype))
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
    add_model_options(p)
    p.add_argument("--listen", type=float, default=3.0, help="seconds to let the assistant answer (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_ask, errors=(TuttiError, ValueError))
