"""`tutti token`: mint a session token for a page's visitor, as the page's own backend does (docs/reliability.md)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..credentials import MAX_TTL, MIN_TTL, mint_session_token, read_secret


def cmd_token(args: argparse.Namespace) -> int:
    print(mint_session_token(read_secret(args.secret_file, "token secret"), args.origin, args.ttl))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="mint a session token for pages of one origin (servers with --token-secret-file)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--secret-file", type=Path, required=True, help="the secret the server reads with --token-secret-file")
    p.add_argument("--origin", required=True, help="the page's origin, scheme://host[:port]: the token works only there")
    p.add_argument("--ttl", type=int, default=120, help=f"seconds the token lives, {MIN_TTL}-{MAX_TTL} (default 120)")
    p.set_defaults(func=cmd_token, errors=(ValueError,))
