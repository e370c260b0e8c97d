"""A live server started as the README's `make run` starts it (`tutti serve --model tiny`, on a free port), probed
with hostile requests from another address (tests/support/hostile.py) while a visitor asks it a held-out question
over the WebSocket protocol: it stays healthy, the visitor gets a spoken answer from the domain's answers, and
the probes were refused as they should be."""
from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
import urllib.request

import numpy as np
import pytest

from assistant.client import converse
from assistant.synth.dialogue import answers
from tests.support.evaluate import held_out_cases, normalise

from .test_tls import free_port

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
CASE = 7  # "how many things can you see", one shape (held-out voice)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
            return r.status == 200 and json.load(r)["ok"] is True
    except OSError:
        return False


@pytest.mark.asyncio
async def test_a_probed_live_server_stays_healthy_and_keeps_answering():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "assistant.cli", "serve", "--model", "tiny",
                                                  "--port", str(port), stdout=asyncio.subprocess.DEVNULL)
    try:
        start = time.monotonic()
        while not healthy(url):
            assert server.returncode is None and time.monotonic() - start < 120, "the server did not start"
            await asyncio.sleep(0.3)
        prober = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.support.hostile", url, "--seconds",
                                                      "8", "--source", "127.0.0.2", stdout=asyncio.subprocess.PIPE)
        await asyncio.sleep(0.5)
        case = held_out_cases(CASE + 1)[CASE]
        question = np.concatenate([case.audio, np.zeros(int(0.5 * case.rate), np.float32)])
        reply = await converse(url.replace("http", "ws") + "/ws", question, case.rate, image=case.image, listen_after=3.0)
        probes = json.loads((await prober.communicate())[0])
        assert healthy(url)
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
    finally:
        server.terminate()
        await server.wait()
    said = "".join(reply.captions)
    assert normalise(said) in {normalise(a) for a in answers()}, said
    assert np.sqrt(np.mean(reply.audio ** 2)) > 0.01 and not reply.errors
    assert probes.get("ws 403") and probes.get("1009") and probes.get("offer 413 offer_too_large"), probes
    assert any(how.startswith("flood") for how in probes) and 'tutti_rejected_total{reason="flood"}' in metrics
