"""Who may start a session: the Origin allowlist on `/offer` and `/ws`, the offer's content type, `/readyz`, and
refusals that carry a machine-readable code. Real sockets on 127.0.0.1."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
import pytest
import pytest_asyncio
import websockets

from assistant.access import Admission, OriginPolicy, RateLimits, Refused
from assistant.engine import Engine
from tests.support.loopback import serving

from ..conftest import random_codec

OFFER = json.dumps({"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "type": "offer"})  # refused later as bad SDP


@pytest_asyncio.fixture
async def base():
    engine = Engine(random_codec(), max_sessions=1)
    async with serving(engine, origins=OriginPolicy.of(["https://kiosk.example"])) as (url, _):
        yield url


async def post_offer(url: str, origin: str | None, content_type: str = "application/json") -> tuple[int, dict]:
    headers = {"Content-Type": content_type} | ({"Origin": origin} if origin else {})
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/offer", data=OFFER, headers=headers) as response:
            assert "Access-Control-Allow-Origin" not in response.headers  # no CORS, wildcard or other
            return response.status, await response.json()


@pytest.mark.asyncio
async def test_offers_from_other_sites_are_refused_and_allowed_ones_pass(base):
    refused = await post_offer(base, "https://evil.example")
    assert refused[0] == 403 and refused[1]["code"] == "origin" and "--allow-origin" in refused[1]["error"]
    for origin in (None, base, "http://localhost:3000", "https://kiosk.example"):
        status, body = await post_offer(base, origin)
        assert (status, body["code"]) == (400, "bad_sdp"), origin  # past the origin check, refused for its SDP
    status, body = await post_offer(base, None, "text/plain")
    assert (status, body["code"]) == (415, "content_type")
    async with aiohttp.ClientSession() as http:
        metrics = await (await http.get(base + "/metrics")).text()
    assert 'tutti_rejected_total{reason="origin"} 1.0' in metrics
    assert 'tutti_rejected_total{reason="content_type"} 1.0' in metrics


@pytest.mark.asyncio
async def test_websocket_sessions_from_other_sites_are_refused_before_the_upgrade(base):
    ws_url = base.replace("http://", "ws://") + "/ws"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(ws_url, origin="https://kiosk.example") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"


@pytest.mark.asyncio
async def test_readyz_says_whether_a_session_would_be_taken(base):
    ws_url = base.replace("http://", "ws://") + "/ws"
    async with aiohttp.ClientSession() as http:
        ready = await http.get(base + "/readyz")
        assert ready.status == 200 and (await ready.json())["free_sessions"] == 1
        async with websockets.connect(ws_url) as ws:
            await ws.recv()
            full = await http.get(base + "/readyz")
            assert full.status == 503 and (await full.json())["ready"] is False
            assert (await http.get(base + "/healthz")).status == 200  # alive all the same
            async with websockets.connect(ws_url) as other:
                refusal = json.loads(await other.recv())
                assert refusal["type"] == "error" and refusal["code"] == "session_limit"


def test_a_malformed_allowed_origin_is_refused_at_start_up():
    with pytest.raises(ValueError, match="scheme://host"):
        OriginPolicy.of(["kiosk.example"])
    done = subprocess.run([sys.executable, "-m", "assistant.cli", "serve", "--allow-origin", "ftp://x"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "give an origin" in done.stderr


@pytest.mark.asyncio
async def test_one_address_may_hold_and_start_only_so_many_sessions():
    """Per client address, over both transports: at most 2 held at once, at most 3 started in a minute."""
    engine = Engine(random_codec(), max_sessions=8)
    async with serving(engine, limits=RateLimits(starts_per_minute=3, sessions_per_address=2)) as (url, _):
        ws_url = url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(ws_url) as a, websockets.connect(ws_url) as b:
            await a.recv(), await b.recv()
            status, body = await post_offer(url, None)  # a third session, by WebRTC this time
            assert (status, body["code"]) == (429, "too_many_sessions")
        await asyncio.sleep(0.1)  # both have left
        async with websockets.connect(ws_url) as c:  # the third start of the minute
            assert json.loads(await c.recv())["type"] == "ready"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url):
                pass
        assert refused.value.response.status_code == 429
        async with aiohttp.ClientSession() as http:
            metrics = await (await http.get(url + "/metrics")).text()
        assert 'tutti_rejected_total{reason="rate"} 1.0' in metrics
        assert engine.sessions == []


def test_start_times_slide_out_of_the_minute():
    now = [0.0]
    admission = Admission(RateLimits(starts_per_minute=2, sessions_per_address=5), clock=lambda: now[0])
    for _ in range(2):
        with admission.hold("10.0.0.1"):
            pass
    with pytest.raises(Refused, match="last minute"):
        with admission.hold("10.0.0.1"):
            pass
    assert admission._held == {}  # a refusal leaves nothing behind
    with admission.hold("10.0.0.2"):  # another address is not concerned
        pass
    now[0] = 60.0
    with admission.hold("10.0.0.1"):
        pass
    assert admission._held == {}  # every hold released
