"""Headless Chromium (Debian's), with fake microphone and camera fed from files, against `tutti serve`
in echo mode on 127.0.0.1: real WebRTC, real codecs, real sockets."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import torch

from assistant.engine import Engine
from core.audio import save_audio
from tests.support.loopback import CHROMIUM, serving, started_page

from ..conftest import random_codec

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")


def write_wav(path: Path, seconds: float = 6.0, rate: int = 48_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    audio = np.where((t > 1.0) & (t < 4.0), 0.4 * np.sin(2 * np.pi * 330 * t), 0.0)
    save_audio(path, torch.from_numpy(audio)[None], rate)
    return path


def write_y4m(path: Path, frames: int = 30, width: int = 160, height: int = 120) -> Path:
    """Raw 4:2:0 video (the format Chromium's fake camera reads): a square moving across."""
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            y = np.full((height, width), 40, np.uint8)
            x0 = (i * 4) % (width - 30)
            y[40:70, x0:x0 + 30] = 220
            f.write(b"FRAME\n" + y.tobytes() + np.full(width * height // 2, 128, np.uint8).tobytes())
    return path


@pytest_asyncio.fixture
async def server():
    engine = Engine(random_codec(), max_sessions=4)
    async with serving(engine) as (url, _):
        yield url, engine


@pytest.mark.asyncio
async def test_browser_session_sends_audio_and_video_and_hears_the_server(server, tmp_path):
    url, engine = server
    wav, y4m = write_wav(tmp_path / "mic.wav"), write_y4m(tmp_path / "cam.y4m")
    async with started_page(url, wav, y4m) as page:
        await page.wait_for_function("(window.tutti.packets || 0) > 50", timeout=15_000)
        await asyncio.sleep(1.5)
        assert len(engine.sessions) == 1
        session = engine.sessions[0]
        heard = session.timings.steps - session.timings.late_frames
        assert heard > 5, "the server received no audio from the browser"
        assert session.video is not None and session.video.shape[2] == 3, "no camera frame reached the server"
        assert await page.evaluate("window.tutti.events") > 0, "no data-channel event reached the page"
        assert await page.get_attribute("#captions", "aria-live") == "polite"
        await page.click("#stop")
        await page.wait_for_function("window.tutti.connected === false")
    for _ in range(50):
        if not engine.sessions:
            break
        await asyncio.sleep(0.1)
    assert engine.sessions == []


@pytest_asyncio.fixture
async def vision_server():
    from assistant.model.config import lm_preset
    from assistant.model.lm import StreamingLM
    from encoders import SiglipVision, vision_preset

    codec = random_codec()
    v = vision_preset("test")
    lm = StreamingLM(lm_preset("test").with_(card=codec.cfg.bins, vision_dim=v.hidden, vision_tokens=v.tokens)).eval()
    engine = Engine(codec, lm, vision=SiglipVision(v).eval())
    async with serving(engine) as (url, _):
        yield url, engine


@pytest.mark.asyncio
async def test_page_shows_the_changed_patch_overlay(vision_server, tmp_path):
    url, engine = vision_server
    wav, y4m = write_wav(tmp_path / "mic.wav"), write_y4m(tmp_path / "cam.y4m")
    async with started_page(url, wav, y4m) as page:
        await page.wait_for_function("window.tutti.vision && window.tutti.vision.changed.length > 0", timeout=20_000)
        vision = await page.evaluate("window.tutti.vision")
        assert vision["grid"] == 8 and all(0 <= i < 64 for i in vision["changed"])
        assert "Re-encoded:" in await page.inner_text("#vision")


@pytest.mark.asyncio
async def test_the_page_uses_the_servers_ice_servers_and_the_token_in_its_address(tmp_path):
    from playwright.async_api import async_playwright

    from assistant.access import Tokens
    from assistant.credentials import IceServers
    from tests.support.loopback import launch_chromium
    from tests.support.stun import stun_server

    engine, token = Engine(random_codec(), max_sessions=2), "page-token-0123456789"
    wav = write_wav(tmp_path / "mic.wav")
    async with stun_server() as (stun_url, stun), \
            serving(engine, tokens=Tokens(token), ice=IceServers((stun_url,))) as (url, _):
        async with started_page(url, wav, path=f"/#token={token}") as page:
            assert await page.evaluate("window.tutti.iceServers") == [{"urls": [stun_url]}]
            assert stun.asked, "the browser sent no STUN request to the configured server"
            assert len(engine.sessions) == 1
        async with async_playwright() as p:  # without the token the page says why, and no session starts
            browser = await launch_chromium(p, wav)
            try:
                page = await browser.new_page()
                await page.goto(url + "/")
                await page.select_option("#camera", "")
                await page.click("#start")
                await page.wait_for_function("document.querySelector('#status').textContent.includes('token')")
                assert "Refused" in await page.inner_text("#status")
                assert await page.is_enabled("#start")
            finally:
                await browser.close()
