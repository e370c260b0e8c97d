"""`POST /offer` refuses bad requests with a 4xx (503 when full) and the server keeps serving."""
from __future__ import annotations

import aiohttp
import pytest
import pytest_asyncio

from assistant.engine import Engine
from tests.support.loopback import serving

from ..conftest import random_codec

VIDEO_ONLY = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


@pytest_asyncio.fixture(params=[0, 2], ids=["full", "open"])
async def base(request):
    async with serving(Engine(random_codec(), max_sessions=request.param)) as (url, _):
        yield url, request.param == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("body, status, words", [
    ("{not json", 400, "must be JSON"),
    ('{"sdp": 5, "type": "offer"}', 400, "must be JSON"),
    ('{"sdp": "x", "type": "answer"}', 400, "must be JSON"),
    ('{"sdp": "%s", "type": "offer"}' % VIDEO_ONLY.replace("\r\n", "\\r\\n"), 400, "no audio"),
    ('{"sdp": "' + "a" * 70_000 + '", "type": "offer"}', 413, "larger than"),
    ('{"sdp": "v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n", "type": "offer"}', (503, 400),
     ("session limit", "cannot use this offer")),
])
async def test_bad_offers_are_refused_and_the_server_keeps_serving(base, body, status, words):
    base, full = base
    if isinstance(status, tuple):  # a broken SDP with audio: 503 when full, else refused as unusable
        status, words = (status[0], words[0]) if full else (status[1], words[1])
    async with aiohttp.ClientSession() as http:
        response = await http.post(base + "/offer", data=body, headers={"Content-Type": "application/json"})
        assert response.status == status
        assert words in (await response.json())["error"]
        assert (await http.get(base + "/healthz")).status == 200
