"""A hostile client, run as its own process beside well-behaved ones: malformed WebSocket messages, one over the
size limit, audio far faster than real time, connections dropped without a word, garbage and oversized offers,
forged tokens and foreign origins, a slow half-sent request. It prints, as one JSON object, how each attack ended,
so that a test can check each one really happened.

    python -m tests.support.hostile http://127.0.0.1:8080 [--seconds 10] [--source 127.0.0.2]

`--source`: the address it sends from (any of 127.0.0.0/8 on loopback), so that the server's per-address
limits tell it apart from the well-behaved clients.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import aiohttp
import websockets

from assistant.transport.messages import MAX_MESSAGE

OFFERS = ("{}", "null", '{"sdp": "v=0", "type": "offer"}', '{"sdp": 5, "type": "offer"}', "x" * 70_000,
          json.dumps({"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + "a=candidate:1 1 udp 1 10.0.0.1 9 typ host\r\n"
                      * 40, "type": "offer"}))


async def closed_how(ws: websockets.ClientConnection) -> str:
    """The close code and reason the server ended `ws` with ("1006" when it just dropped it)."""
    try:
        while True:
            await ws.recv()
    except websockets.ConnectionClosed as e:
        return f"{e.rcvd.code} {e.rcvd.reason}".strip() if e.rcvd else "1006"


async def round_of_attacks(url: str, ended: Counter, source: str | None) -> None:
    ws_url, local = url.replace("http", "ws", 1) + "/ws", {"local_addr": (source, 0)} if source else {}
    async with websockets.connect(ws_url, max_size=None, **local) as ws:  # malformed messages: each answered with an error
        await ws.recv()
        for bad in ("{", "[]", '{"type": 7}', '{"type": "image", "width": 99999}', b"\x01", '{"type": "hello", "sample_rate": 1}'):
            await ws.send(bad)
            ended["error " + json.loads(await ws.recv())["code"]] += 1
    async with websockets.connect(ws_url, max_size=None, **local) as ws:  # one message over the limit
        await ws.recv()
        await ws.send(b"\x00" * (MAX_MESSAGE + 2))
        ended[await closed_how(ws)] += 1
    async with websockets.connect(ws_url, max_size=None, **local) as ws:  # a flood of audio
        await ws.recv()
        try:
            while True:
                await ws.send(b"\x00\x01" * 48_000)
        except websockets.ConnectionClosed:  # the close frame is often lost in the reset of a full socket
            ended["flood " + await closed_how(ws)] += 1
    ws = await websockets.connect(ws_url, **local)  # gone without a close
    await ws.recv()
    ws.transport.abort()
    ended["aborted"] += 1
    for headers in ({"Origin": "https://evil.example"}, {"Authorization": "Bearer forged-0123456789abcdef"}):
        try:
            async with websockets.connect(ws_url, additional_headers=headers, **local):
                ended["ws accepted"] += 1
        except websockets.InvalidStatus as e:
            ended[f"ws {e.response.status_code}"] += 1
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(**local)) as http:
        for body in OFFERS:
            async with http.post(url + "/offer", data=body, headers={"Content-Type": "application/json"}) as r:
                ended[f"offer {r.status} {(await r.json(content_type=None) or {}).get('code')}"] += 1
        async with http.post(url + "/offer", data="{}", headers={"Content-Type": "text/plain"}) as r:
            ended[f"offer {r.status}"] += 1
    parts = urlsplit(url)  # a request that never finishes its headers, dropped after a moment
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, **local)
    writer.write(b"POST /offer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n")
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    ended["half request"] += 1


async def attack(url: str, seconds: float, source: str | None = None) -> Counter:
    ended: Counter = Counter()
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            await round_of_attacks(url, ended, source)
        except websockets.InvalidStatus as e:  # the per-address limits caught up with it
            ended[f"ws {e.response.status_code}"] += 1
            await asyncio.sleep(0.5)
        except Exception as e:  # noqa: BLE001 - reported, for the caller to judge
            ended[f"client error {type(e).__name__}"] += 1
    return ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--source", help="the loopback address to send from (default: the system's choice)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(attack(args.url, args.seconds, args.source))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
