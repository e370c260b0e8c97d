"""A hostile client, run as its own process beside well-behaved ones: malformed WebSocket messages, one over the
size limit, audio far faster than real time, connections dropped without a word, garbage and oversized offers,
forged tokens and foreign origins, a slow half-sent request; with `--hold`, also one session kept open all along
that streams noise in real time between malformed messages (the attacked session that stays in the batch). It
prints, as one JSON object, how each attack ended, so that a test can check each one really happened.

    python -m tests.support.hostile http://127.0.0.1:8080 [--seconds 10] [--source 127.0.0.2] [--hold]

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
import numpy as np
import websockets

from assistant.transport.messages import MAX_MESSAGE

BAD = ("{", "[]", '{"type": 7}', '{"type": "image", "width": 99999}', b"\x01", '{"type": "hello", "sample_rate": 1}')
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
        for bad in BAD:
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


async def held_session(url: str, ended: Counter, until: float, source: str | None) -> None:
    """One session that stays: 80 ms of loud noise every 80 ms, each followed by a malformed message (a pace
    under the input limits, so that it is answered, not closed), until `until`."""
    local = {"local_addr": (source, 0)} if source else {}
    noise = np.random.default_rng(0).integers(-30_000, 30_000, 3_840, dtype=np.int16).tobytes()  # 80 ms, 48 kHz
    async with websockets.connect(url.replace("http", "ws", 1) + "/ws", max_size=None, **local) as ws:
        await ws.recv()

        async def read() -> None:
            async for reply in ws:
                if isinstance(reply, str) and json.loads(reply)["type"] == "error":
                    ended["held error " + json.loads(reply)["code"]] += 1

        reader = asyncio.create_task(read())
        start, sent = time.monotonic(), 0
        while time.monotonic() < until:
            await ws.send(noise)
            await ws.send(BAD[sent % len(BAD)])
            sent += 1
            await asyncio.sleep(max(0.0, start + 0.08 * sent - time.monotonic()))
        reader.cancel()
    ended["held frames"] += sent


async def attack(url: str, seconds: float, source: str | None = None, hold: bool = False) -> Counter:
    ended: Counter = Counter()
    until = time.monotonic() + seconds
    held = asyncio.create_task(held_session(url, ended, until, source)) if hold else None
    while time.monotonic() < until:
        try:
            await round_of_attacks(url, ended, source)
        except websockets.InvalidStatus as e:  # the per-address limits caught up with it
            ended[f"ws {e.response.status_code}"] += 1
            await asyncio.sleep(0.5)
        except Exception as e:  # noqa: BLE001 - reported, for the caller to judge
            ended[f"client error {type(e).__name__}"] += 1
    if held is not None:
        try:
            await held
        except Exception as e:  # noqa: BLE001 - reported, for the caller to judge
            ended[f"held client error {type(e).__name__}"] += 1
    return ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--source", help="the loopback address to send from (default: the system's choice)")
    parser.add_argument("--hold", action="store_true", help="keep one abusive session open all along")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(attack(args.url, args.seconds, args.source, args.hold))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
