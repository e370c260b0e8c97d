"""Session deadlines, with short test values: a WebRTC peer that never connects, a session that sends no audio,
one that lasts too long. Each ends its session, frees its row and is counted by cause. Real sockets on 127.0.0.1."""
from __future__ import annotations

import asyncio
import contextlib
import json
import time

import aiohttp
import numpy as np
import pytest
import websockets
from aiortc import RTCPeerConnection

from assistant.access import Timeouts
from assistant.engine import Engine
from assistant.server import WEBRTC
from tests.support.loopback import serving

from ..conftest import random_codec

SHORT = Timeouts(connect=0.6, no_media=0.6, max_length=1.5, tick=0.1)


async def closed_count(url: str, cause: str) -> float:
    async with aiohttp.ClientSession() as http:
        metrics = await (await http.get(url + "/metrics")).text()
    line = [m for m in metrics.splitlines() if m.startswith(f'tutti_sessions_closed_total{{cause="{cause}"}}')]
    return float(line[0].split()[-1]) if line else 0.0


@pytest.mark.asyncio
async def test_a_peer_that_never_connects_is_ended_at_the_deadline():
    engine = Engine(random_codec(), max_sessions=2)
    async with serving(engine, timeouts=SHORT) as (url, app):
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http:  # the answer is never applied: ICE never starts
            response = await http.post(url + "/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"})
            assert response.status == 200
        assert len(engine.sessions) == 1
        for _ in range(40):  # the session leaves first, then the peer closes
            if not engine.sessions and not app[WEBRTC].peers:
                break
            await asyncio.sleep(0.1)
        await pc.close()
        assert engine.sessions == [] and not app[WEBRTC].peers
        assert await closed_count(url, "connect_timeout") == 1


@pytest.mark.asyncio
async def test_a_silent_session_and_an_overlong_one_are_closed_with_their_cause():
    engine = Engine(random_codec(), max_sessions=2)
    async with serving(engine, timeouts=SHORT) as (url, _):
        ws_url = url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(ws_url) as silent:
            assert json.loads(await silent.recv())["type"] == "ready"
            start = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed) as ended:
                while True:
                    await silent.recv()
        assert ended.value.rcvd.code == 1008 and ended.value.rcvd.reason == "no_media"
        assert 0.5 < time.monotonic() - start < 1.5
        async with websockets.connect(ws_url) as talker:
            await talker.recv()
            start = time.monotonic()

            async def listen() -> None:  # a client reads what it is sent (the close frame comes after speech)
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for _ in talker:
                        pass
            listener = asyncio.create_task(listen())
            with pytest.raises(websockets.ConnectionClosed) as ended:
                while True:  # a microphone's 20 ms pieces, forever
                    await talker.send(np.zeros(960, "<i2").tobytes())
                    await asyncio.sleep(0.02)
            await listener
        assert ended.value.rcvd.code == 1008 and ended.value.rcvd.reason == "max_length"
        assert 1.3 < time.monotonic() - start < 2.5
        await asyncio.sleep(0.1)
        assert engine.sessions == []
        assert await closed_count(url, "no_media") == 1 and await closed_count(url, "max_length") == 1
