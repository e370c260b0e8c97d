"""A live `tutti serve` app on 127.0.0.1 for the end-to-end tests, and the headless Chromium they drive."""
from __future__ import annotations

import shutil
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import torch
from aiohttp import web

from assistant.engine import Engine
from assistant.server import build_app

from ..conftest import randomize_codebooks

CHROMIUM = shutil.which("chromium")


def random_codec():
    from codec import MimiCodec, preset

    torch.manual_seed(0)
    return randomize_codebooks(MimiCodec(preset("test")).eval())


@asynccontextmanager
async def serving(engine: Engine, loopback: bool = True) -> AsyncIterator[tuple[str, web.Application]]:
    """The app on a free loopback port: yields (http://127.0.0.1:PORT, app)."""
    app = build_app(engine, loopback=loopback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", app
    finally:
        await runner.cleanup()


async def launch_chromium(playwright, wav: Path, y4m: Path | None = None):
    """Debian's chromium, headless, fake microphone (and camera) fed from files, loopback-only WebRTC."""
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns"]
    if y4m is not None:
        args.append(f"--use-file-for-fake-video-capture={y4m}")
    return await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
