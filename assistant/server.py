"""`tutti serve`'s HTTP app: the engine's clock and the transports, each handed the engine and the metrics.

Routes: `/` (the browser page, web/), `POST /offer` (WebRTC), `/ws` (WebSocket protocol), `/healthz` (alive),
`/readyz` (taking new sessions), `/metrics` (Prometheus).
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from .access import Admission, OriginPolicy, RateLimits, Timeouts
from .engine import Engine
from .metrics import Metrics
from .transport.webrtc import WebRTCTransport, loopback_only
from .transport.websocket import WebSocketTransport

ENGINE = web.AppKey("engine", Engine)
METRICS = web.AppKey("metrics", Metrics)
WEBRTC = web.AppKey("webrtc", WebRTCTransport)
RUNNING = web.AppKey("running", asyncio.Event)  # set while the engine's clock runs
WEB = Path(__file__).resolve().parents[1] / "web"


async def healthz(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    step = engine.last_step[0] if engine.last_step else None
    return web.json_response({"ok": True, "sessions": len(engine.sessions), "max_sessions": engine.max_sessions,
                              "mode": "echo" if engine.lm is None else "model", "last_step_seconds": step})


async def readyz(request: web.Request) -> web.Response:
    """200 while a new session would be taken (a free slot, the clock running), else 503: for load balancers."""
    engine, running = request.app[ENGINE], request.app[RUNNING]
    free = engine.max_sessions - len(engine.sessions)
    ready = free > 0 and running.is_set()
    return web.json_response({"ready": ready, "free_sessions": free}, status=200 if ready else 503)


async def metrics_view(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain", charset="utf-8")


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB / "index.html")


def build_app(engine: Engine, loopback: bool = False, origins: OriginPolicy = OriginPolicy(),
              limits: RateLimits | None = None, timeouts: Timeouts = Timeouts()) -> web.Application:
    """`loopback`: WebRTC gathers and accepts ICE candidates on 127.0.0.1 only (tests, benchmarks); `origins`:
    the pages that may start sessions besides the server's own and local ones; `limits`: per client address,
    over both transports (None: none); `timeouts`: the sessions' deadlines."""
    app = web.Application(client_max_size=2**20)
    metrics = Metrics()
    admission = Admission(limits)
    webrtc = WebRTCTransport(engine, metrics, loopback, origins, admission, timeouts)
    running = asyncio.Event()
    app[ENGINE], app[METRICS], app[WEBRTC], app[RUNNING] = engine, metrics, webrtc, running
    if loopback:
        loopback_only()

    engine.on_step = metrics.observe_step

    async def clock(app: web.Application):
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        running.set()
        yield
        running.clear()
        stop.set()
        await task
        await webrtc.close()

    app.cleanup_ctx.append(clock)
    app.router.add_get("/ws", WebSocketTransport(engine, metrics, origins, admission, timeouts).handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_post("/offer", webrtc.offer)
    app.router.add_get("/", page)
    app.router.add_static("/static/", WEB)
    return app
