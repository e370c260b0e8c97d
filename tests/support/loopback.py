"""A live app on a free 127.0.0.1 port and headless Chromium with fake devices that opens its page:
what the end-to-end tests and `bench/e2e.py` drive (their traffic never leaves loopback).

Needs the test extras (playwright) and Debian's `chromium`.
"""
from __future__ import annotations

import shutil
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web

from assistant.access import Policy
from assistant.engine import Engine
from assistant.server import build_app

CHROMIUM = shutil.which("chromium")


@asynccontextmanager
async def serving(engine: Engine, loopback: bool = True, **policy: Any) -> AsyncIterator[tuple[str, web.Application]]:
    """The app on a free loopback port: yields (http://127.0.0.1:PORT, app); `policy`: Policy's fields."""
    app = build_app(engine, Policy(**policy), loopback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", app
    finally:
        await runner.cleanup()


async def launch_chromium(playwright: Any, wav: Path, y4m: Path | None = None) -> Any:
    """Debian's chromium, headless, fake microphone (and camera) fed from files, loopback-only WebRTC."""
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns"]
    if y4m is not None:
        args.append(f"--use-file-for-fake-video-capture={y4m}")
    return await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


@asynccontextmanager
async def started_page(url: str, wav: Path, y4m: Path | None = None, path: str = "/") -> AsyncIterator[Any]:
    """The page at `url` + `path` in headless Chromium, its session started and connected (no camera without
    `y4m`); the browser closes on exit."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await launch_chromium(p, wav, y4m)
        try:
            page = await browser.new_page()
            await page.goto(url + path)
            if y4m is None:
                await page.select_option("#camera", "")
            await page.click("#start")
            await page.wait_for_function("window.tutti.connected === true", timeout=15_000)
            yield page
        finally:
            await browser.close()
