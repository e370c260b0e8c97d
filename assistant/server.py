"""`tutti serve`'s HTTP app: the engine's clock and the transports, each handed the engine and the metrics.

Routes: `/` (the browser page, web/), `GET /config` (the page's ICE servers), `POST /offer` (WebRTC), `/ws`
(WebSocket protocol), `POST /token` (session tokens for a page, with the static token), `/healthz` (alive),
`/readyz` (taking new sessions), `/metrics` (Prometheus).
"""
from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from .access import Admission, PeerAddresses, Policy, Refused
from .credentials import MAX_TTL, MIN_TTL, mint_session_token, origin_of
from .engine import Engine
from .metrics import Metrics
from .transport.messages import MAX_IMAGE_SIDE
from .transport.vp8 import bound_decoders
from .transport.webrtc import WebRTCTransport, loopback_only
from .transport.websocket import WebSocketTransport

ENGINE = web.AppKey("engine", Engine)
METRICS = web.AppKey("metrics", Metrics)
WEBRTC = web.AppKey("webrtc", WebRTCTransport)
RUNNING = web.AppKey("running", asyncio.Event)  # set while the engine's clock runs
POLICY = web.AppKey("policy", Policy)
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


async def token_view(request: web.Request) -> web.Response:
    """`POST /token` {"origin": ORIGIN, "ttl": SECONDS}: a session token for a page of ORIGIN (one the server
    allows), for a backend that holds the static token (`--token`) and hands its visitors one-use tokens."""
    policy, metrics = request.app[POLICY], request.app[METRICS]
    try:
        if not policy.tokens.is_bearer(policy.tokens.presented(request)):
            raise Refused(401, "minting a session token needs the static token (--token)", "token")
        try:
            data = await request.json()
            origin, ttl = origin_of(str(data["origin"])), int(data.get("ttl", 120))
            policy.origins.require(origin, request)
            token = mint_session_token(policy.tokens.secret, origin, ttl)
        except (ValueError, KeyError, TypeError) as e:
            raise Refused(400, f'the body must be JSON {{"origin": ORIGIN, "ttl": {MIN_TTL}-{MAX_TTL}}}: {e}',
                          "bad_request") from None
    except Refused as e:
        metrics.reject(e.code)
        return e.response()
    return web.json_response({"token": token, "ttl": ttl})


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB / "index.html")


def build_app(engine: Engine, policy: Policy = Policy(), loopback: bool = False) -> web.Application:
    """`policy`: who may start sessions and their limits; `loopback`: WebRTC gathers and accepts ICE candidates
    on 127.0.0.1 only (tests, benchmarks)."""
    if loopback:
        policy = replace(policy, peers=PeerAddresses(loopback=True))
        loopback_only()
    app = web.Application(client_max_size=2**20)
    metrics = Metrics()
    admission = Admission(policy.limits)
    bound_decoders(MAX_IMAGE_SIDE, lambda: metrics.reject("frame_too_large"))
    webrtc = WebRTCTransport(engine, metrics, policy, admission)
    running = asyncio.Event()
    app[ENGINE], app[METRICS], app[WEBRTC], app[RUNNING], app[POLICY] = engine, metrics, webrtc, running, policy

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
    app.router.add_get("/ws", WebSocketTransport(engine, metrics, policy, admission).handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_post("/offer", webrtc.offer)
    app.router.add_get("/config", webrtc.config)
    app.router.add_post("/token", token_view)
    app.router.add_get("/", page)
    app.router.add_static("/static/", WEB)
    return app
