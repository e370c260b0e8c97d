"""`tutti`: the command-line entry point. Each command group lives in assistant/commands/."""
from __future__ import annotations

import argparse
import logging
import sys

from .commands import ask, client, codec, desktop, serve, token, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tutti", description="Tutti: an open real-time voice-and-vision assistant.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    codec.register(sub)
    serve.register(sub)
    ask.register(sub)
    desktop.register(sub)
    client.register(sub)
    token.register(sub)
    train.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except args.errors as e:
        print(f"tutti: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
