"""`tutti serve`: the HTTP server that hosts the engine's clock and the transports.

Routes: `/ws` (WebSocket protocol), `/healthz`, `/metrics` (Prometheus).
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from .engine import Engine
from .metrics import Metrics
from .transport import websocket

ENGINE = web.AppKey("engine", Engine)
METRICS = web.AppKey("metrics", Metrics)


async def healthz(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    step = engine.last_step[0] if engine.last_step else None
    return web.json_response({"ok": True, "sessions": len(engine.sessions), "max_sessions": engine.max_sessions,
                              "mode": "echo" if engine.lm is None else "model", "last_step_seconds": step})


async def metrics_view(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain", charset="utf-8")


def build_app(engine: Engine) -> web.Application:
    app = web.Application(client_max_size=2**20)
    metrics = Metrics()
    app[ENGINE], app[METRICS] = engine, metrics

    engine.on_step = metrics.observe_step

    async def clock(app: web.Application):
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        yield
        stop.set()
        await task

    app.cleanup_ctx.append(clock)
    app.router.add_get("/ws", websocket.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    return app
