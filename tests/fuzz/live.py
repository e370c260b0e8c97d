"""A live Tutti server on 127.0.0.1 run in a background thread with its own event loop.

Hypothesis (and its stateful machines) drive code synchronously, so the fuzzers talk to the server with plain
blocking clients (http.client, websockets.sync) while the server runs as in production: aiohttp on its own loop,
the engine's clock stepping. Anything the server logs with a traceback at ERROR or above (aiohttp's, asyncio's
and Tutti's own loggers), and any exception its loop is left with, is recorded in `errors`: a crash inside a
handler is a finding even when the client sees only a dropped socket. Tutti's WARNING "closing a peer that aiortc
had half set up" carries aiortc's traceback too, but it is the handled end of an offer refused as bad_sdp (the
answer and the peers held are what the checks look at), so it is not recorded.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import threading
import time
import traceback
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, TypeVar

from assistant.engine import Engine
from assistant.server import WEBRTC
from tests.support.loopback import serving

T = TypeVar("T")
START_TIMEOUT = 60.0  # seconds: hang detectors only, never asserted as figures
CALL_TIMEOUT = 30.0


LOGGERS = ("aiohttp", "asyncio", "tutti")


class _Recorder(logging.Handler):
    """Keeps the ERROR (and worse) log records that carry a traceback (aiohttp's "Error handling request",
    asyncio's unretrieved task exceptions)."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            self.sink.append(f"{record.name}: {record.getMessage()}: {error!r}{_where(error)}")


IN_AIORTC = "[raised in aiortc]"  # ends an error line whose exception was raised inside aiortc's own code


def _where(error: BaseException | None) -> str:
    """Where `error` was raised: its two innermost frames, tagged IN_AIORTC when the innermost is aiortc's."""
    frames = traceback.extract_tb(error.__traceback__) if error is not None and error.__traceback__ else []
    at = "".join(f" at {f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames[-2:])
    return at + (" " + IN_AIORTC if frames and "/aiortc/" in frames[-1].filename else "")


def _describe(context: dict[str, Any]) -> str:
    """One line for what the server's loop was left with: message, exception, where, and which task."""
    error, task = context.get("exception"), context.get("task") or context.get("future")
    name = task.get_coro().__qualname__ if isinstance(task, asyncio.Task) else type(task).__name__
    return f"loop: {context.get('message')}: {error!r} (in {name}){_where(error)}"


class LiveServer:
    """`with LiveServer(engine) as server:` serves `engine` at `server.url` until the block ends."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = ""
        self.port = 0
        self.app: Any = None
        self.errors: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fuzz-server", daemon=True)
        self._recorder = _Recorder(self.errors)

    def __enter__(self) -> LiveServer:
        for name in LOGGERS:
            logging.getLogger(name).addHandler(self._recorder)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._failed is not None:
            raise RuntimeError(f"the fuzz server did not start: {self._failed!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(self._recorder)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # noqa: BLE001 - reported to the starting thread
            self._failed = e
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._loop.set_exception_handler(lambda loop, context: self.errors.append(_describe(context)))
        async with serving(self.engine) as (url, app):
            self.url, self.app = url, app
            self.port = int(url.rsplit(":", 1)[1])
            self._ready.set()
            await self._stop.wait()

    def call(self, work: Callable[[], Awaitable[T]], timeout: float = CALL_TIMEOUT) -> T:
        """Run `work()` on the server's loop and return its result (for closing peers, reading state)."""
        assert self._loop is not None

        async def run() -> T:
            return await work()

        future: Future[T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(timeout)

    # -- what the fuzzers check ------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                chunked: bool = False) -> tuple[int, str, bytes]:
        """One HTTP request on a fresh connection: (status, content type, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CALL_TIMEOUT)
        try:
            if chunked:
                conn.putrequest(method, path)
                for key, value in (headers or {}).items():
                    conn.putheader(key, value)
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                data = body or b""
                for i in range(0, len(data), 16384):
                    piece = data[i:i + 16384]
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                conn.send(b"0\r\n\r\n")
            else:
                conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            conn.close()

    def healthy(self) -> bool:
        """/healthz answers 200 with {"ok": true}."""
        status, _, body = self.request("GET", "/healthz")
        return status == 200 and json.loads(body).get("ok") is True

    @property
    def peers(self) -> set:
        return self.app[WEBRTC].peers

    def close_peers(self) -> int:
        """Close every WebRTC peer the server holds (the accepted offers); how many there were."""
        async def close_all() -> int:
            peers = list(self.peers)
            await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
            return len(peers)

        return self.call(close_all)

    def wait_for_no_sessions(self, timeout: float = CALL_TIMEOUT) -> bool:
        """Whether the engine's sessions all leave within `timeout` (a hang detector, not a figure: a session
        that a closed connection still holds would never leave)."""
        until = time.monotonic() + timeout
        while self.engine.sessions and time.monotonic() < until:
            time.sleep(0.01)
        return not self.engine.sessions
