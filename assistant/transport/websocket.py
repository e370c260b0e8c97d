"""The WebSocket protocol for kiosks and embedding (`/ws`); messages in `messages.py`, docs/protocol.md.

One connection is one session. Audio comes in at the rate the client declared and goes out at the codec's
rate, one frame per message; captions follow the frame that added them. Bad messages are answered with an
error message and the connection carries on.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import ExitStack

from aiohttp import WSMsgType, web

from core.errors import EngineError, InputError

from ..access import Admission, Deadlines, Policy, Refused
from ..engine import Engine
from ..metrics import Metrics
from ..session import Session
from . import messages

log = logging.getLogger("tutti.ws")
OUTPUT_POLL = 0.01  # seconds between checks of a session's output queue
INPUT_RATE = 48_000  # until the client's `hello` says otherwise
CLOSE_TIMEOUT = 1.0  # seconds a closing client has to answer the close; a flooding one would be read all along
FLOOD_GRACE = 0.05  # seconds a flooding client has to answer the close


class Response(web.WebSocketResponse):
    """aiohttp's WebSocket response, minus one leak: aiohttp 3.14 re-arms the heartbeat when data (the client's
    answer to our close) arrives after `close()`, which keeps each closed session's response (some 130 kB) alive
    for 20-30 s: 100 MB at 30 closes a second."""

    def _on_data_received(self) -> None:
        if not self.closed:
            super()._on_data_received()


def parse_seed(text: str) -> int:
    """The session's sampling seed from `?seed=`: 0..2**32-1."""
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and int(text) < 2**32):
        raise Refused(400, f"seed must be an integer in 0..{2**32 - 1}", "bad_seed")
    return int(text)


class WebSocketTransport:
    """The `/ws` handler, serving sessions of `engine` and counting refusals in `metrics`."""

    def __init__(self, engine: Engine, metrics: Metrics, policy: Policy = Policy(),
                 admission: Admission | None = None) -> None:
        self.engine, self.metrics, self.policy = engine, metrics, policy
        self.admission = admission or Admission(policy.limits)

    async def _error(self, ws: web.WebSocketResponse, text: str, code: str) -> None:
        self.metrics.reject(code)
        await ws.send_str(messages.message("error", message=text, code=code))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        with ExitStack() as held:
            try:  # before the upgrade: a refused page, token, seed or address gets an HTTP answer
                seed = parse_seed(request.query.get("seed", "0"))
                held.enter_context(self.policy.admit(request, self.admission))
            except Refused as e:
                self.metrics.reject(e.code)
                return e.response()
            ws = Response(max_msg_size=messages.MAX_MESSAGE, heartbeat=20, timeout=CLOSE_TIMEOUT)
            await ws.prepare(request)
            try:
                session = held.enter_context(self.engine.session(seed))
            except EngineError as e:
                await self._error(ws, str(e), "session_limit")
                await ws.close(code=1013)  # try again later
                return ws
            cause = await self._converse(ws, session)
        self.metrics.closed.labels(cause).inc()
        if not ws.closed:
            await ws.close()
        return ws

    async def _converse(self, ws: web.WebSocketResponse, session: Session) -> str:
        """The session until the client leaves ("client"), or a deadline or its input budget ends it: then it is
        closed with code 1008 and the cause ("no_media": no audio for too long, "max_length", "flood": faster
        than its InputLimits), which is returned."""
        codec = self.engine.codec
        await ws.send_str(messages.message("ready", session=session.id, sample_rate=codec.sample_rate,
                                           frame_size=codec.frame_size, input_rate=INPUT_RATE))
        sender = asyncio.create_task(self._pump(ws, session))
        try:
            return await self._receive(ws, session, Deadlines(session, self.policy.timeouts))
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _receive(self, ws: web.WebSocketResponse, session: Session, deadlines: Deadlines) -> str:
        """The client's messages, until it leaves (or says bye) or a deadline passes. The deadlines are looked at
        between messages (at least every tick), and the close is sent from here: a close from another task
        while this one reads would drop the connection without its close frame."""
        rate = INPUT_RATE
        audio_seconds, size, count = self.policy.input.budget()
        while True:
            try:
                msg = await ws.receive(timeout=self.policy.timeouts.tick)
            except asyncio.TimeoutError:
                msg = None
            if (cause := deadlines.expired()) is not None:
                await ws.close(code=1008, message=cause.encode())
                return cause
            if msg is None:
                continue
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return "client"
            if msg.type == WSMsgType.ERROR:
                log.info("session %d: connection error %s", session.id, ws.exception())
                return "client"
            length = len(msg.data) if isinstance(msg.data, (bytes, str)) else 0
            if not (count.spend(1) and size.spend(length)
                    and (msg.type != WSMsgType.BINARY or audio_seconds.spend(length / 2 / rate))):
                self.metrics.reject("flood")  # closed without reading on: the rest of the flood is never parsed
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.close(code=1008, message=b"flood"), FLOOD_GRACE)
                return "flood"
            try:
                if msg.type == WSMsgType.BINARY:
                    session.push_audio(messages.parse_audio(msg.data), rate)
                    continue
                if msg.type != WSMsgType.TEXT:
                    continue
                data = messages.parse(msg.data)
                kind = data["type"]
                if kind == "hello":
                    rate = messages.parse_rate(data, rate)
                    await ws.send_str(messages.message("hello", input_rate=rate))
                elif kind == "image":
                    session.push_video(messages.parse_image(data))
                elif kind == "ping":
                    await ws.send_str(messages.message("pong", t=data.get("t")))
                elif kind == "timings":
                    t = session.timings
                    await ws.send_str(messages.message("timings", steps=t.steps, late_frames=t.late_frames,
                                                       dropped_output=t.dropped_output, stages=t.stages))
                elif kind == "bye":
                    return "client"
                else:
                    await self._error(ws, f"unknown message type {kind!r}", "unknown_type")
            except InputError as e:
                await self._error(ws, str(e), e.reason if isinstance(e, messages.ProtocolError) else "bad_message")

    @staticmethod
    async def _pump(ws: web.WebSocketResponse, session: Session) -> None:
        while not ws.closed:
            out = session.pop_output()
            if out is None:
                await asyncio.sleep(OUTPUT_POLL)
                continue
            await ws.send_bytes(messages.audio(out.audio))
            if out.text:
                await ws.send_str(messages.message("caption", text=out.text, step=out.step))
