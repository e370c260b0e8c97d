"""One session's bad input, floods and abrupt end never stop the others: two well-behaved WebSocket sessions
get the same speech back (its frames with speech, and their level, within 10%) with and without an attacker beside them, in its own
process (tests/support/hostile.py: malformed messages, an oversized one, a flood, dropped connections, garbage
offers). Echo mode on the bundled codec, real sockets on 127.0.0.1. Step times under attack: bench/isolation.py."""
from __future__ import annotations

import asyncio
import json
import sys

import aiohttp
import numpy as np
import pytest

from assistant.client import Reply, converse
from assistant.engine import Engine
from assistant.loader import ECHO, load_model
from tests.support.loopback import serving

RATE = 48_000


def voice(seconds: float, pitch: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * pitch * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


async def two_sessions(ws_url: str) -> list[Reply]:
    return list(await asyncio.gather(*(converse(ws_url, voice(3.0, pitch), RATE) for pitch in (220, 330))))


def speech(reply: Reply) -> tuple[int, float]:
    """How many 80 ms frames of the reply carry speech, and their median level."""
    frames = reply.audio[: len(reply.audio) // (n := reply.sample_rate * 2 // 25) * n].reshape(-1, n)
    levels = np.sqrt(np.mean(frames ** 2, axis=1))
    loud = levels[levels > 0.2 * levels.max()]
    return len(loud), float(np.median(loud))


@pytest.mark.asyncio
async def test_an_attacked_neighbour_leaves_the_other_sessions_as_they_were():
    engine = Engine(load_model(ECHO).codec, max_sessions=8)
    async with serving(engine) as (url, _):
        ws_url = url.replace("http://", "ws://") + "/ws"
        baseline = await two_sessions(ws_url)
        attacker = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.support.hostile", url,
                                                        "--seconds", "6", stdout=asyncio.subprocess.PIPE)
        await asyncio.sleep(1.0)  # under way
        attacked = await two_sessions(ws_url)
        ended = json.loads((await attacker.communicate())[0])
        async with aiohttp.ClientSession() as http:
            assert (await http.get(url + "/healthz")).status == 200
            metrics = await (await http.get(url + "/metrics")).text()
        for _ in range(30):
            if not engine.sessions:
                break
            await asyncio.sleep(0.1)
        assert engine.sessions == []
    assert ended.get("1009") and ended.get("aborted") and ended.get("offer 400 bad_offer") and ended.get("ws 403")
    assert any(how.startswith("flood") for how in ended) and not any(how.startswith("client error") for how in ended)
    assert 'tutti_sessions_closed_total{cause="flood"}' in metrics
    for before, after in zip(baseline, attacked):
        assert not after.errors
        (frames, level), (frames_then, level_then) = speech(after), speech(before)
        assert frames_then > 20 and abs(frames - frames_then) <= 0.1 * frames_then, (frames_then, frames)
        assert level_then > 0.01 and abs(level - level_then) <= 0.1 * level_then, (level_then, level)
