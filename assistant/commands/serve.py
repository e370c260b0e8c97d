"""`tutti serve`: run the server (browser page, WebRTC, WebSocket protocol, /healthz, /metrics) on a model."""
from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

from core.errors import TuttiError

from ..loader import Placement, build_engine
from . import add_model_options


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from ..access import OriginPolicy, PeerAddresses, Policy, RateLimits, Timeouts, Tokens, tls_context
    from ..credentials import IceServers, read_secret
    from ..server import build_app

    secret = read_secret(args.token_secret_file, "token secret") if args.token_secret_file else None
    turn = read_secret(args.turn_secret_file, "TURN secret") if args.turn_secret_file else None
    policy = Policy(  # bad options fail before the model loads
        origins=OriginPolicy.of(args.allow_origin), tokens=Tokens(args.token or None, secret),
        limits=RateLimits(args.starts_per_minute, args.sessions_per_address),
        timeouts=Timeouts(args.connect_timeout, args.no_media_timeout, args.max_session_minutes * 60),
        peers=PeerAddresses.of(args.peer_network), ice=IceServers(tuple(args.ice_server or ()), turn, args.turn_ttl))
    tls = tls_context(args.certfile, args.keyfile)
    placement = Placement.of(args.device, args.dtype)
    engine = build_engine(args.model, args.max_sessions, placement)
    print(f"tutti: {args.model} on {placement}: state {engine.session_bytes / 2**20:.1f} MB per session, "
          f"{args.max_sessions} sessions preallocated", flush=True)
    scheme = "https" if tls else "http"
    print(f"tutti: serving {args.model} on {scheme}://{args.host}:{args.port}/ (WebSocket at /ws)", flush=True)
    if not policy.tokens.required and not _loopback(args.host):
        print(f"tutti: warning: no --token: anyone who reaches {args.host}:{args.port} can start sessions", flush=True)
    web.run_app(build_app(engine, policy), host=args.host, port=args.port, ssl_context=tls, print=None)
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the server (browser page, WebRTC /offer, WebSocket /ws, /healthz, /metrics)",
                       description="Run the assistant server: open http://HOST:PORT/ in a browser to talk to it.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080)
    add_model_options(p)
    p.add_argument("--max-sessions", type=int, default=16,
                   help="sessions served at once, their state preallocated (refused at start-up if it does not fit "
                        "in the device's free memory); more are refused")
    p.add_argument("--certfile", type=Path, help="serve HTTPS with this certificate (PEM; with --keyfile): browsers "
                                                  "allow the microphone and camera to pages from another host only so")
    p.add_argument("--keyfile", type=Path, help="the certificate's private key (PEM)")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help="a web page origin (scheme://host[:port]) that may start sessions, besides the server's own "
                        "and this machine's (localhost); repeat for more")
    p.add_argument("--token", default=os.environ.get("TUTTI_TOKEN"),
                   help="require this static token (16+ characters; default: $TUTTI_TOKEN) or a session token to start "
                        "a session: Authorization: Bearer TOKEN, ?token= on /ws, #token= in the page's address")
    p.add_argument("--token-secret-file", type=Path, help="require session tokens signed with the secret in this file "
                   "(16+ bytes), minted by the page's origin (`tutti token`); they live 60-600 s and start one session")
    p.add_argument("--ice-server", action="append", metavar="URL",
                   help="a STUN or TURN server for the page (stun:HOST[:PORT], turn:HOST[:PORT][?transport=tcp], "
                        "turns:...); repeat for more; none by default")
    p.add_argument("--turn-secret-file", type=Path,
                   help="the TURN server's shared secret (coturn's static-auth-secret): the page gets credentials "
                        "from it that expire after --turn-ttl")
    p.add_argument("--turn-ttl", type=int, default=3600, help="seconds the page's TURN credentials last (default 3600)")
    p.add_argument("--peer-network", action="append", metavar="CIDR",
                   help="accept ICE candidates only inside this network (repeat for more); default: any address but "
                        "loopback, link-local, multicast and reserved ones")
    p.add_argument("--starts-per-minute", type=int, default=30,
                   help="sessions one client address may start in any minute; more are refused (default 30)")
    p.add_argument("--sessions-per-address", type=int, default=8,
                   help="sessions one client address may hold at once (default 8)")
    p.add_argument("--connect-timeout", type=float, default=30.0,
                   help="seconds a WebRTC peer has to connect before its session is ended (default 30)")
    p.add_argument("--no-media-timeout", type=float, default=30.0,
                   help="seconds a connected session may send no audio before it is ended (default 30)")
    p.add_argument("--max-session-minutes", type=float, default=240.0,
                   help="minutes a session may last (default 240)")
    p.set_defaults(func=cmd_serve, errors=(TuttiError, ValueError))
