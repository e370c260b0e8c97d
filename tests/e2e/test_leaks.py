"""Connect/disconnect cycles at scale over both transports, clean and abrupt: afterwards every asyncio task,
peer connection, engine session, thread and file descriptor they made is gone, and the process grew by less
than a stated bound. A server that runs for weeks meets thousands of clients that leave any way they like; a
few kilobytes or one socket kept per client would stop it in the end. Real sockets on 127.0.0.1, echo mode.

Counted before (after a warm-up of the same cycles, so that what is made lazily exists on both sides: the
loop's default thread pool, aiortc's codecs, torch's kernels) and after the cycles, once the server has
reaped every abandoned client: the loop's tasks (but the engine clock's own wait, which comes and goes each
frame); live `RTCPeerConnection`, `PeerSession`, `Session` and aiohttp `WebSocketResponse` objects (found by the
garbage collector); the server's peers and engine sessions; Python threads and the process's OS threads; open
file descriptors; resident memory (after `gc.collect()` and glibc's `malloc_trim`, so that the figure is what
is held, not what the allocator keeps cached).

Threads: the one exception is the event loop's default executor (threads named `asyncio_N`), which aiortc's
senders encode on and the resolver looks up on: it keeps idle workers by design, up to its `max_workers`, so
its workers are bounded by that and may only account for any change in OS threads; every other thread is
counted exactly. (Measured: 6 pool workers before and after, 11 OS threads before and after.)

Memory bounds, from measured growth with margin (2 cores, 2026-12-02): 1 000 WebSocket cycles grew the
process by 0.4-10 MB, 200 WebRTC cycles by 14-25 MB (it levels off near 35 MB over 1 000: the allocator's
high-water mark, not a per-cycle cost). The WebSocket memory check is what found aiohttp 3.14.5 keeping each
server-closed WebSocket alive for 20-30 s (the server's `websocket.Response` works around it).
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterator

import aiohttp
import numpy as np
import pytest
import websockets
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from assistant.access import Timeouts
from assistant.engine import Engine
from assistant.server import WEBRTC
from assistant.session import Session
from assistant.transport.webrtc import PeerSession
from tests.support.loopback import serving
from tests.support.webrtc_client import FileTrack

from ..conftest import random_codec

WS_CYCLES, RTC_CYCLES = 1000, 200
WARMUP = 24  # cycles of every kind before the baseline
WS_AT_ONCE, RTC_AT_ONCE = 12, 8  # clients cycling side by side
WS_RSS_BOUND = 20 * 2**20  # bytes the 1 000 WebSocket cycles may grow the process by
RTC_RSS_BOUND = 40 * 2**20  # bytes the 200 WebRTC cycles may grow the process by
# abandoned peers are reaped by these deadlines: a peer that never connects, one that vanished once connected
# (connect: roomy, as a loaded 2-core machine takes seconds over some handshakes)
SHORT = Timeouts(connect=5.0, no_media=1.0, tick=0.1)
PIECE = np.zeros(960, "<i2").tobytes()  # 20 ms of a 48 kHz microphone


@dataclass(frozen=True)
class Resources:
    tasks: int
    peer_connections: int  # RTCPeerConnection objects alive, client's and server's
    peer_sessions: int  # PeerSession objects alive
    sessions: int  # assistant Session objects alive
    ws_responses: int  # the server's aiohttp WebSocketResponse objects alive
    server_peers: int
    engine_sessions: int
    threads: int  # Python threads, but for the loop's default executor
    pool_threads: int  # the loop's default executor's
    os_threads: int  # the process's, native ones included
    fds: int
    rss: int  # bytes

    def report(self, other: Resources) -> str:
        return ", ".join(f"{k} {getattr(self, k)} -> {getattr(other, k)}" for k in self.__dataclass_fields__
                         if k != "rss") + f", rss +{(other.rss - self.rss) / 2**20:.1f} MB"


def _live(kind: type) -> int:
    return sum(type(o) is kind for o in gc.get_objects())


def tasks(engine: Engine) -> int:
    """The loop's tasks, but the engine clock's wait for a wake-up (there between steps, gone during one)."""
    def clock(task: asyncio.Task) -> bool:
        frame = getattr(task.get_coro(), "cr_frame", None)
        return frame is not None and frame.f_locals.get("self") is engine._wake  # noqa: SLF001
    return sum(not clock(t) for t in asyncio.all_tasks())


def measure(engine: Engine, app: web.Application) -> Resources:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    names = [t.name for t in threading.enumerate()]
    pool = sum(n.startswith("asyncio_") for n in names)
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return Resources(tasks(engine), _live(RTCPeerConnection), _live(PeerSession), _live(Session),
                     _live(web.WebSocketResponse), len(app[WEBRTC].peers), len(engine.sessions),
                     len(names) - pool, pool, len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd")), rss)


async def settled(engine: Engine, app: web.Application, baseline: int | None = None) -> None:
    """Wait (a bounded number of ticks) for the server to reap what clients abandoned and, given `baseline`, for
    the loop to be back to that many tasks."""
    for _ in range(200):
        if not engine.sessions and not app[WEBRTC].peers and (baseline is None or tasks(engine) <= baseline):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # closing transports finish on the loop's next turns


async def cycles(cycle: Callable[[int], Awaitable[None]], count: int, at_once: int) -> None:
    """`count` cycles, `at_once` side by side; cycle i runs kind i."""
    numbers = iter(range(count))

    async def worker() -> None:
        for i in numbers:
            await cycle(i)
    async with asyncio.TaskGroup() as group:  # one failing stops the others
        for _ in range(at_once):
            group.create_task(worker())


def assert_at_baseline(before: Resources, after: Resources) -> None:
    """Every count back where it was (the loop's thread pool: bounded, see the module's docstring)."""
    print(f"\n  {before.report(after)}")
    assert after.tasks == before.tasks
    assert (after.peer_connections, after.peer_sessions, after.sessions) == (
        before.peer_connections, before.peer_sessions, before.sessions)
    assert after.server_peers == after.engine_sessions == 0
    assert after.threads == before.threads
    executor = asyncio.get_running_loop()._default_executor  # noqa: SLF001
    assert after.pool_threads <= (0 if executor is None else executor._max_workers)  # noqa: SLF001
    assert after.os_threads - before.os_threads <= after.pool_threads - before.pool_threads
    assert after.fds == before.fds


@contextlib.contextmanager
def errors_logged_as_text() -> Iterator[None]:
    """The loop's unhandled errors logged as text, without the exception: pytest's log capture keeps each record
    and a traceback keeps every frame's objects alive, which would count as leaked. (aiortc leaves a task's
    "protocol is shutdown" unretrieved when a peer closes while its SCTP sends.)"""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: logging.getLogger("asyncio").warning(  # text, not the objects
        f"{context['message']}: {context.get('exception')!r}"))
    try:
        yield
    finally:
        loop.set_exception_handler(None)


async def causes(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(url + "/metrics")).text()
    return {line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines()
            if line.startswith("tutti_sessions_closed_total{")}


# -- WebSocket ----------------------------------------------------------------------------------------
async def ws_cycle(ws_url: str, i: int) -> None:
    """Connect and leave one of six ways: a close frame, `bye`, after talking, or dropping the TCP connection
    without a close frame (at once, before reading `ready`, or while sending audio)."""
    kind = i % 6
    ws = await websockets.connect(ws_url)
    try:
        if kind == 4:  # gone before reading anything
            ws.transport.abort()
            return
        assert json.loads(await ws.recv())["type"] == "ready"
        if kind in (1, 2, 5):
            await ws.send(json.dumps({"type": "hello", "sample_rate": 48_000}))
            for _ in range(5):
                await ws.send(PIECE)
        if kind == 0:
            await ws.close()
        elif kind == 1:
            await ws.send(json.dumps({"type": "bye"}))
            with contextlib.suppress(websockets.ConnectionClosed):
                async for _ in ws:  # what was said, then the server's close
                    pass
        elif kind == 2:
            await ws.send("{not json")  # answered with an error; the session goes on
            await ws.close()
        else:  # 3: dropped after ready; 5: dropped mid-audio
            ws.transport.abort()
    finally:
        await ws.close()


async def websocket_cycles() -> tuple[Resources, Resources, dict[str, float]]:
    """The resources before and after WS_CYCLES WebSocket cycles, and the sessions' ends by cause."""
    engine = Engine(random_codec(), max_sessions=WS_AT_ONCE + 4)
    async with serving(engine, timeouts=SHORT) as (url, app):
        ws_url = url.replace("http://", "ws://") + "/ws"
        await cycles(lambda i: ws_cycle(ws_url, i), WARMUP, WS_AT_ONCE)
        await settled(engine, app)
        before = measure(engine, app)
        await cycles(lambda i: ws_cycle(ws_url, i), WS_CYCLES, WS_AT_ONCE)
        await settled(engine, app, before.tasks)
        after = measure(engine, app)
        ended = await causes(url)
    return before, after, ended


@pytest.mark.asyncio
async def test_websocket_cycles_leave_nothing_behind():
    before, after, ended = await websocket_cycles()
    assert_at_baseline(before, after)
    assert ended == {"client": WS_CYCLES + WARMUP}  # every one ended as a client leaving, none by a deadline


@pytest.mark.asyncio
async def test_websocket_cycles_release_their_memory_at_once():
    before, after, _ = await websocket_cycles()
    print(f"\n  WebSocket responses alive {before.ws_responses} -> {after.ws_responses}, "
          f"rss +{(after.rss - before.rss) / 2**20:.1f} MB (bound {WS_RSS_BOUND / 2**20:.0f} MB)")
    assert after.ws_responses == before.ws_responses
    assert after.rss - before.rss < WS_RSS_BOUND


# -- WebRTC -------------------------------------------------------------------------------------------
async def offer(http: aiohttp.ClientSession, url: str, pc: RTCPeerConnection) -> RTCSessionDescription:
    await pc.setLocalDescription(await pc.createOffer())
    response = await http.post(url + "/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"})
    answer = await response.json()
    assert response.status == 200, answer
    return RTCSessionDescription(sdp=answer["sdp"], type=answer["type"])


async def connected(pc: RTCPeerConnection) -> bool:
    """Whether the client connects (a guard of 10 s; the server's deadline ends a peer that does not)."""
    done = asyncio.Event()
    pc.on("connectionstatechange", lambda: pc.connectionState in ("connected", "failed", "closed") and done.set())
    if pc.connectionState != "connected":
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), 10)
    return pc.connectionState == "connected"


class Unplugged:
    """A UDP transport that takes nothing in and sends nothing out, as a cable pulled out; closing it closes the
    real one."""

    def __init__(self, real: asyncio.DatagramTransport) -> None:
        real.pause_reading()
        self.real = real

    def sendto(self, data: bytes, addr: object = None) -> None:
        pass

    def close(self) -> None:
        self.real.close()


def vanish(pc: RTCPeerConnection) -> None:
    """Unplug the client's UDP sockets under aiortc: the server hears nothing more, not even DTLS's close."""
    for transceiver in pc.getTransceivers():
        ice = transceiver.sender.transport.transport
        for protocol in ice._connection._protocols:  # noqa: SLF001
            if not isinstance(protocol.transport, Unplugged):
                protocol.transport = Unplugged(protocol.transport)


async def rtc_cycle(http: aiohttp.ClientSession, url: str, i: int, unconnected: list[int]) -> None:
    """Connect and leave one of four ways: connected then closed (DTLS close_notify tells the server),
    connected then gone without a word (reaped by the no-media deadline), the answer never applied, or
    closed while ICE is still checking (both reaped by the connect deadline)."""
    kind = i % 4
    pc = RTCPeerConnection()
    try:
        pc.addTrack(FileTrack(np.zeros(4800, np.float32), 48_000))
        pc.createDataChannel("events")
        answer = await offer(http, url, pc)
        if kind == 2:
            return
        await pc.setRemoteDescription(answer)
        if kind == 3:
            return
        if not await connected(pc):
            unconnected.append(i)  # left to the connect deadline, as an abandoned one
            return
        await asyncio.sleep(0.2)  # a few frames each way
        if kind == 1:
            vanish(pc)
    finally:
        await pc.close()


@pytest.mark.asyncio
async def test_webrtc_cycles_leave_nothing_behind():
    engine = Engine(random_codec(), max_sessions=64)
    # cycles whose client never connected: about 1 in 100 with unplugged clients in the mix (their ICE stays
    # "checking"; none with clean closes alone): the server's connect deadline reaps them like abandoned ones
    unconnected: list[int] = []
    with errors_logged_as_text():
        async with serving(engine, timeouts=SHORT) as (url, app), aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)) as http:  # no keep-alive sockets to count
            await cycles(lambda i: rtc_cycle(http, url, i, unconnected), WARMUP, RTC_AT_ONCE)
            await settled(engine, app)
            before = measure(engine, app)
            await cycles(lambda i: rtc_cycle(http, url, i, unconnected), RTC_CYCLES, RTC_AT_ONCE)
            await settled(engine, app, before.tasks)
            after = measure(engine, app)
            ended = await causes(url)
    assert_at_baseline(before, after)
    print(f"  ended by cause: {ended}; clients that did not connect: {len(unconnected)}")
    assert after.ws_responses == before.ws_responses
    assert after.rss - before.rss < RTC_RSS_BOUND
    assert sum(ended.values()) == RTC_CYCLES + WARMUP
    assert {"client", "no_media", "connect_timeout"} <= set(ended)
