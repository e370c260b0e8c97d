"""The WebSocket protocol for kiosks and embedding (`/ws`); see docs/protocol.md.

Binary messages carry audio (int16 little-endian mono PCM: in at the rate the
client declared, out at the codec's rate, one frame per message); text messages
are JSON objects with a "type". Bad messages are answered with an error message
and the connection carries on.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging

import numpy as np
from aiohttp import WSMsgType, web

from codec.errors import CodecInputError

from ..engine import EngineError
from ..metrics import Metrics

log = logging.getLogger("tutti.ws")
MAX_MESSAGE = 8 * 2**20  # bytes: a 1080p raw frame in base64 fits; more is refused
MAX_IMAGE_SIDE = 4096
OUTPUT_POLL = 0.01  # seconds between checks of a session's output queue


async def _send_error(ws: web.WebSocketResponse, message: str, metrics: Metrics, reason: str) -> None:
    metrics.rejected.labels(reason).inc()
    await ws.send_json({"type": "error", "message": message})


def _image(msg: dict) -> np.ndarray:
    try:
        width, height = int(msg["width"]), int(msg["height"])
        data = base64.b64decode(msg["data"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise ValueError(f"an image needs integer width and height and base64 data ({e})") from None
    if msg.get("encoding", "bgr24") != "bgr24":
        raise ValueError("only encoding 'bgr24' (raw BGR bytes, row by row) is accepted")
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise ValueError(f"image sides must lie in 1..{MAX_IMAGE_SIDE}")
    if len(data) != width * height * 3:
        raise ValueError(f"{len(data)} bytes do not make a {width}x{height} BGR image")
    return np.frombuffer(data, np.uint8).reshape(height, width, 3)


async def handle(request: web.Request) -> web.WebSocketResponse:
    from ..server import ENGINE, METRICS

    engine, metrics = request.app[ENGINE], request.app[METRICS]
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=20)
    await ws.prepare(request)
    try:
        session = engine.add_session(seed=int(request.query.get("seed", "0") or 0))
    except (EngineError, ValueError) as e:
        await _send_error(ws, str(e), metrics, "session_limit")
        await ws.close(code=1013)  # try again later
        return ws
    rate = 48_000
    await ws.send_json({"type": "ready", "session": session.id, "sample_rate": engine.codec.sample_rate,
                        "frame_size": engine.codec.frame_size, "input_rate": rate})

    async def pump() -> None:
        while not ws.closed:
            out = session.pop_output()
            if out is None:
                await asyncio.sleep(OUTPUT_POLL)
                continue
            await ws.send_bytes((np.clip(out.audio, -1, 1) * 32767).astype("<i2").tobytes())
            if out.text:
                await ws.send_json({"type": "caption", "text": out.text, "step": out.step})

    sender = asyncio.create_task(pump())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                if len(msg.data) % 2:
                    await _send_error(ws, "audio must be whole int16 samples", metrics, "bad_audio")
                    continue
                session.push_audio(np.frombuffer(msg.data, "<i2"), rate)
            elif msg.type == WSMsgType.TEXT:
                try:
                    data = json.loads(msg.data)
                    kind = data["type"] if isinstance(data, dict) else None
                except (ValueError, KeyError):
                    await _send_error(ws, "text messages must be JSON objects with a 'type'", metrics, "bad_json")
                    continue
                try:
                    if kind == "hello":
                        rate = int(data.get("sample_rate", rate))
                        if not 8000 <= rate <= 192_000:
                            raise ValueError("sample_rate must lie in 8000..192000")
                        await ws.send_json({"type": "hello", "input_rate": rate})
                    elif kind == "image":
                        session.push_video(_image(data))
                    elif kind == "ping":
                        await ws.send_json({"type": "pong", "t": data.get("t")})
                    elif kind == "timings":
                        t = session.timings
                        await ws.send_json({"type": "timings", "steps": t.steps, "late_frames": t.late_frames,
                                            "dropped_output": t.dropped_output, "stages": t.stages})
                    elif kind == "bye":
                        break
                    else:
                        await _send_error(ws, f"unknown message type {kind!r}", metrics, "unknown_type")
                except (ValueError, CodecInputError) as e:
                    await _send_error(ws, str(e), metrics, "bad_message")
            elif msg.type == WSMsgType.ERROR:
                log.info("session %d: connection error %s", session.id, ws.exception())
    finally:
        engine.remove_session(session)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        if not ws.closed:
            await ws.close()
    return ws
