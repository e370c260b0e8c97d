"""Python aiortc clients against a live server on 127.0.0.1: concurrent sessions and connect/disconnect cycles."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import pytest_asyncio

from assistant.engine import Engine
from assistant.server import WEBRTC
from tests.support.loopback import serving
from tests.support.webrtc_client import webrtc_session

from ..conftest import random_codec


@pytest_asyncio.fixture
async def served():
    engine = Engine(random_codec(), max_sessions=8)
    async with serving(engine) as (url, app):
        yield url, engine, app


def own_threads() -> int:
    """Threads alive, less asyncio's default executor: a bounded pool that grows lazily (name lookups)."""
    return sum(not t.name.startswith("asyncio_") for t in threading.enumerate())


def tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * 48_000)) / 48_000
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.asyncio
async def test_eight_concurrent_webrtc_sessions_hear_the_server(served):
    url, engine, _ = served
    steps_seen = []
    engine.on_step = lambda report: steps_seen.append(report.sessions)
    replies = await asyncio.gather(*(webrtc_session(url, tone(2.0, 200 + 40 * i), seconds=2.5) for i in range(8)))
    for reply in replies:
        assert len(reply.audio) > 48_000  # over a second of the server's speech track arrived
        assert np.abs(reply.audio).max() > 0.01  # the echo of the tone, not only silence
    assert max(steps_seen) == 8  # all eight were stepped in one batch


@pytest.mark.asyncio
async def test_connect_disconnect_cycles_leave_nothing_behind(served):
    url, engine, app = served
    await webrtc_session(url, tone(0.2, 300), seconds=0.3)  # warm-up: the library's own lazily made threads
    await asyncio.sleep(0.5)
    threads, tasks = own_threads(), len(asyncio.all_tasks())
    for _ in range(50):
        await webrtc_session(url, tone(0.1, 300), seconds=0.05)
    for _ in range(50):
        if not engine.sessions and not app[WEBRTC].peers:
            break
        await asyncio.sleep(0.1)
    assert engine.sessions == [] and not app[WEBRTC].peers
    assert own_threads() <= threads
    assert len(asyncio.all_tasks()) <= tasks
