"""One session's bad input, floods and abrupt end never stop the others: two well-behaved WebSocket sessions, with
an attacker beside them in its own process (tests/support/hostile.py: malformed messages, an oversized one, a
flood, dropped connections, garbage offers, and one abusive session held open all along), get no error, every frame they sent stepped and returned, and their
speech back. Echo mode on the bundled codec, real sockets on 127.0.0.1. How much the attack slows the steps and
the neighbours' timing (late frames) is measured by bench/isolation.py, not asserted here."""
from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp
import numpy as np
import pytest

from assistant.client import Reply, converse
from assistant.engine import Engine
from assistant.loader import ECHO, load_model
from tests.support.loopback import serving

RATE = 48_000
SECONDS = 3.0


def voice(seconds: float, pitch: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * pitch * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


async def two_sessions(ws_url: str) -> list[Reply]:
    return list(await asyncio.gather(*(converse(ws_url, voice(SECONDS, pitch), RATE) for pitch in (220, 330))))


def frames(reply: Reply) -> int:
    return len(reply.audio) * 25 // (2 * reply.sample_rate)  # 80 ms each


def energy(reply: Reply) -> float:
    return float(np.sum(reply.audio ** 2))


@pytest.fixture
def own_cores():
    """The attacker on a core of its own where there are two (its CPU is not the server's to share; a remote
    attacker's is not either): yields the function that moves a child process there."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield lambda: None
        return
    os.sched_setaffinity(0, cpus[:-1])
    try:
        yield lambda: os.sched_setaffinity(0, cpus[-1:])
    finally:
        os.sched_setaffinity(0, cpus)


@pytest.mark.asyncio
async def test_an_attacked_neighbour_leaves_the_other_sessions_as_they_were(own_cores):
    engine = Engine(load_model(ECHO).codec, max_sessions=8)
    async with serving(engine) as (url, _):
        ws_url = url.replace("http://", "ws://") + "/ws"
        baseline = await two_sessions(ws_url)
        attacker = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.support.hostile", url,
                                                        "--seconds", "6", "--hold", stdout=asyncio.subprocess.PIPE,
                                                        preexec_fn=own_cores)
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
    assert any(how.startswith("flood") for how in ended) and not any("client error" in how for how in ended)
    assert ended.get("held error bad_json") and ended.get("held error bad_message") and ended["held frames"] >= 60
    assert 'tutti_sessions_closed_total{cause="flood"}' in metrics
    sent = int(SECONDS * 25 / 2)  # 80 ms frames of speech each neighbour sent
    for before, after in zip(baseline, attacked):
        assert not after.errors
        assert frames(after) >= sent and frames(before) >= sent  # every frame sent was stepped and came back
        assert energy(after) > 0.5 * energy(before) > 0  # as speech, not silence (timing moves it by some 10%)
