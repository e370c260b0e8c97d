"""A live server on 127.0.0.1 and the WebSocket client: real sockets, real engine, echo mode."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
import websockets

from assistant.client import converse
from assistant.engine import Engine
from tests.support.loopback import serving

from ..conftest import random_codec


@pytest_asyncio.fixture
async def server():
    engine = Engine(random_codec(), max_sessions=2)
    async with serving(engine, loopback=False) as (url, _):
        yield url.removeprefix("http://"), engine


def tone(seconds: float, rate: int = 48_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.asyncio
async def test_a_full_session_echoes_speech_back(server):
    host, engine = server
    reply = await converse(f"ws://{host}/ws", tone(1.0), 48_000, listen_after=0.6)
    assert reply.errors == []
    assert reply.sample_rate == 24_000
    assert len(reply.audio) >= 0.8 * 24_000  # about as much speech came back as was sent
    assert np.abs(reply.audio).max() > 0.01
    async with aiohttp.ClientSession() as http:
        health = await (await http.get(f"http://{host}/healthz")).json()
        metrics = await (await http.get(f"http://{host}/metrics")).text()
    assert health["ok"] and health["mode"] == "echo" and health["sessions"] == 0
    assert "tutti_step_seconds_count" in metrics and "tutti_stage_seconds_bucket" in metrics
    late = [line for line in metrics.splitlines() if line.startswith("tutti_late_frames_total ")]
    assert float(late[0].split()[1]) > 0  # the clock ran on after the client stopped sending


@pytest.mark.asyncio
async def test_bad_messages_get_errors_and_the_connection_carries_on(server):
    host, _ = server
    async with websockets.connect(f"ws://{host}/ws") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for bad in ("not json", json.dumps({"type": "dance"}), json.dumps([1, 2]),
                    json.dumps({"type": "image", "width": 4, "height": 4, "data": "AAAA"}),
                    json.dumps({"type": "hello", "sample_rate": 5})):
            await ws.send(bad)
            while True:
                answer = json.loads(await ws.recv())
                if answer["type"] == "error":
                    break
        await ws.send(b"\x00\x01\x02")  # half a sample
        while (answer := await ws.recv()) and isinstance(answer, bytes):
            pass
        assert json.loads(answer)["type"] == "error"
        await ws.send(json.dumps({"type": "ping", "t": 7}))
        while True:
            answer = await ws.recv()
            if isinstance(answer, str) and json.loads(answer)["type"] == "pong":
                break


@pytest.mark.asyncio
async def test_oversized_message_closes_only_that_connection(server):
    host, _ = server
    async with websockets.connect(f"ws://{host}/ws", max_size=None) as ws:
        await ws.recv()
        await ws.send(b"\x00" * (9 * 2**20))
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(1000):
                await ws.recv()
    reply = await converse(f"ws://{host}/ws", tone(0.3), 48_000, listen_after=0.3)
    assert len(reply.audio) > 0


@pytest.mark.asyncio
async def test_over_the_session_limit_is_refused(server):
    host, engine = server
    async with websockets.connect(f"ws://{host}/ws") as a, websockets.connect(f"ws://{host}/ws") as b:
        await a.recv(), await b.recv()
        async with websockets.connect(f"ws://{host}/ws") as c:
            answer = json.loads(await c.recv())
            assert answer["type"] == "error" and "session limit" in answer["message"]
            with pytest.raises(websockets.ConnectionClosed):
                await c.recv()
        assert len(engine.sessions) == 2


@pytest.mark.asyncio
async def test_connect_disconnect_cycles_leave_nothing_behind(server):
    host, engine = server
    before = len(asyncio.all_tasks())
    for _ in range(20):
        async with websockets.connect(f"ws://{host}/ws") as ws:
            await ws.recv()
            await ws.send(tone(0.05).astype("<f4").view("<i2")[:960].tobytes())
    await asyncio.sleep(0.2)
    assert engine.sessions == []
    assert len(asyncio.all_tasks()) <= before
