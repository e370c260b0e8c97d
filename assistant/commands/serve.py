"""`tutti serve`: run the server (browser page, WebRTC, WebSocket protocol, /healthz, /metrics) on a model."""
from __future__ import annotations

import argparse
import logging


log = logging.getLogger("tutti.serve")
MODELS = ["echo", "tiny"]


def build_engine(model: str, max_sessions: int):
    """`echo`: codec round trip, no LM. `tiny`: the bundled model's architecture — RANDOM weights until
    trained weights ship (it babbles; it does not answer)."""
    from codec import preset
    from encoders import SiglipVision, vision_preset

    from ..engine import Engine
    from ..model.config import lm_preset
    from ..model.lm import StreamingLM
    from .codec import random_codec

    codec = random_codec(preset("tiny"), seed=0)
    if model == "echo":
        return Engine(codec, max_sessions=max_sessions)
    log.warning("no trained model is bundled yet: serving the tiny architecture with RANDOM weights")
    lm = StreamingLM(lm_preset("tiny")).eval()
    vision = SiglipVision(vision_preset("tiny")).eval()
    return Engine(codec, lm, vision=vision, max_sessions=max_sessions, vision_pool=2)


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
    p.add_argument("--model", choices=MODELS, default="tiny",
                   help="echo: codec round trip, a sound check; tiny: the bundled architecture (random weights for now)")
    p.add_argument("--max-sessions", type=int, default=16, help="sessions served at once; more are refused")
    p.set_defaults(func=cmd_serve, errors=(ValueError,))
