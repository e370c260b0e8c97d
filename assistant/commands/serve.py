"""`tutti serve`: run the server (browser page, WebRTC, WebSocket protocol, /healthz, /metrics) on a model."""
from __future__ import annotations

import argparse

from core.errors import TuttiError

from ..loader import MODEL_HELP, build_engine


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
    p.set_defaults(func=cmd_serve, errors=(TuttiError, ValueError))
