"""`tutti client`: talk to a Tutti server from this machine's microphone, speaker and camera, over the
WebSocket protocol (docs/protocol.md)."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import asdict

from .desktop import device


def cmd_client(args: argparse.Namespace) -> int:
    import sounddevice as sd
    import websockets

    from ..client import Traffic, talk

    def caption(text: str) -> None:
        print(text, end="", flush=True)

    def error(text: str) -> None:
        print(f"\nserver: {text}", file=sys.stderr)

    traffic = Traffic()
    try:
        asyncio.run(talk(args.url, traffic, device(args.mic), device(args.speaker), args.camera, args.seconds,
                         caption, error, args.token))
    except KeyboardInterrupt:
        pass
    except (OSError, ConnectionError, websockets.WebSocketException) as e:
        print(f"tutti: error: cannot talk to {args.url}: {e}", file=sys.stderr)
        return 2
    except sd.PortAudioError as e:
        print(f"tutti: error: audio device: {e} (see tutti desktop --list-devices)", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"tutti: error: {e}", file=sys.stderr)
        return 2
    print("\n" + " ".join(f"{k} {v}" for k, v in asdict(traffic).items()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="talk to a server from this machine's mic, speaker and camera (WebSocket)",
                       description=__doc__.splitlines()[0])
    p.add_argument("url", help="the server's WebSocket address, e.g. ws://192.0.2.10:8080/ws")
    p.add_argument("--token", default=os.environ.get("TUTTI_TOKEN"),
                   help="the server's token, where it asks for one (default: $TUTTI_TOKEN)")
    p.add_argument("--mic", help="input device index or name (default: the system's)")
    p.add_argument("--speaker", help="output device index or name (default: the system's)")
    p.add_argument("--camera", help="camera: a device index (0), a video file or a stream URL; none by default")
    p.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (default: until Ctrl-C)")
    p.set_defaults(func=cmd_client, errors=(ValueError,))
