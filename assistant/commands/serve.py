"""`tutti serve`: run the server (browser page, WebRTC, WebSocket protocol, /healthz, /metrics) on a model."""
from __future__ import annotations

import argparse
import logging

from codec.errors import CheckpointError


log = logging.getLogger("tutti.serve")
MODEL_HELP = ("echo: the bundled codec's round trip with no LM, a sound check; tiny: the bundled tutti-tiny "
              "(default); or a directory of checkpoints (see README)")


def build_engine(model: str, max_sessions: int):
    """`echo`: the bundled codec's round trip, no LM. `tiny` or a directory: codec, LM, tokenizer and
    (where present) the vision encoder of that model."""
    from codec import load_codec
    from encoders import load_vision

    from ..engine import Engine
    from ..model.checkpoint import load_lm
    from ..model.tokenizer import TextTokenizer
    from ..weights import model_files

    files = model_files("tiny" if model == "echo" else model)
    codec = load_codec(files.codec)
    if model == "echo":
        return Engine(codec, max_sessions=max_sessions)
    if files.lm is None or files.tokenizer is None:
        raise ValueError(f"{model}: a conversational model needs lm.safetensors and tokenizer.model beside its codec")
    lm = load_lm(files.lm)
    tokenizer = TextTokenizer(files.tokenizer, lm.cfg.text_padding_id, lm.cfg.text_end_padding_id)
    vision = load_vision(files.vision) if files.vision is not None else None
    log.info("model %s: codec %s, LM %s, vision %s", model, files.codec.name, files.lm.name,
             files.vision.name if files.vision else "none")
    return Engine(codec, lm, vision=vision, tokenizer=tokenizer, max_sessions=max_sessions)  # sampling: lm.cfg


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from ..server import build_app

    engine = build_engine(args.model, args.max_sessions)
    print(f"tutti: serving {args.model} on http://{args.host}:{args.port}/ (WebSocket at /ws)", flush=True)
    web.run_app(build_app(engine), host=args.host, port=args.port, print=None)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the server (browser page, WebRTC /offer, WebSocket /ws, /healthz, /metrics)",
                       description="Run the assistant server: open http://HOST:PORT/ in a browser to talk to it.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--model", default="tiny", help=MODEL_HELP)
    p.add_argument("--max-sessions", type=int, default=16, help="sessions served at once; more are refused")
    p.set_defaults(func=cmd_serve, errors=(ValueError, CheckpointError))
