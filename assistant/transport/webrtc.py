"""WebRTC (aiortc): `POST /offer` signalling, audio + video in, self-paced audio out, a data channel
for captions and timings.

Incoming tracks are always drained (aiortc's queues grow without bound otherwise); video keeps only the
latest frame, converted to an array at most `VIDEO_FPS` times a second. The outgoing track sleeps until
each 20 ms frame is due (the sender does not pace) and sends silence when the assistant has nothing;
its 20 ms grid locks onto the engine's deliveries, so that new speech leaves just after it is made.
"""
from __future__ import annotations

import asyncio
import fractions
import json
import logging
import re
import time

import av
import numpy as np
import torch
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from codec.audio import StreamingResampler

from ..engine import EngineError
from ..session import Session

log = logging.getLogger("tutti.webrtc")
RATE = 48_000  # Opus
PIECE = 960  # 20 ms at 48 kHz
MAX_BACKLOG_FRAMES = 1  # engine frames of speech the outgoing track may hold
SLOT_MARGIN = 0.005  # the outgoing track aims to send new speech this long after the engine delivers it
SLOT_GAIN = 0.5  # fraction of the slot grid's phase error corrected per delivery
VIDEO_FPS = 5.0
MAX_OFFER = 64 * 1024


def loopback_only() -> None:
    """Gather ICE candidates on 127.0.0.1 only (tests, benchmarks): aioice leaves loopback out by default."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def grid_shift(lag: float, ahead: float) -> float:
    """How much earlier (negative: later) to move the outgoing track's 20 ms slot grid, given that new speech
    was delivered `lag` seconds before the slot that takes it (nominal time, so that a late wake-up does not
    count) with `ahead` seconds of speech queued in front. The slot's phase is pulled towards SLOT_MARGIN after
    deliveries both ways (a wrapped error: jitter cannot make the grid run away); a queue is only ever shed."""
    slot = PIECE / RATE
    phase = (lag - SLOT_MARGIN + slot / 2) % slot - slot / 2
    return max(-slot / 2, min(slot / 2, SLOT_GAIN * (phase + ahead)))


class SpeechTrack(MediaStreamTrack):
    """The assistant's voice: session output resampled to 48 kHz, 20 ms frames paced by its own clock."""

    kind = "audio"

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.resampler = StreamingResampler(session.sample_rate, RATE)
        self.buffer = np.zeros(0, np.float32)
        self.start: float | None = None
        self.sent = 0
        self.channel = None  # the data channel, once the page opens it: captions go there

    async def recv(self) -> av.AudioFrame:
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.sent / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        while (out := self.session.pop_output()) is not None:
            ahead = (self.buffer.shape[0] // PIECE) * PIECE / RATE  # its first sample leaves after these pieces
            self.start -= grid_shift(due - out.delivered_at, ahead)
            if out.ready_at is not None:
                self.session.timings.plumbing.append(time.monotonic() - out.ready_at + ahead)
            more = self.resampler(torch.from_numpy(out.audio)).numpy()
            self.buffer = np.concatenate([self.buffer, more])
            if out.text and self.channel is not None and self.channel.readyState == "open":
                self.channel.send(json.dumps({"type": "caption", "text": out.text, "step": out.step}))
        # Speech queued beyond one engine frame is stale (e.g. made before the peer connected): skip it, or
        # it would delay everything after it for the rest of the call.
        bound = MAX_BACKLOG_FRAMES * RATE * self.session.frame_size // self.session.sample_rate
        if self.buffer.shape[0] > bound + PIECE:
            self.buffer = self.buffer[-bound:]
        if self.buffer.shape[0] >= PIECE:
            piece, self.buffer = self.buffer[:PIECE], self.buffer[PIECE:]
        else:
            piece = np.zeros(PIECE, np.float32)  # nothing to say: silence
        frame = av.AudioFrame.from_ndarray((np.clip(piece, -1, 1) * 32767).astype(np.int16)[None], format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.sent, fractions.Fraction(1, RATE)
        self.sent += PIECE
        return frame


async def drain_audio(track: MediaStreamTrack, session: Session) -> None:
    try:
        while True:
            frame = await track.recv()
            data = frame.to_ndarray()  # s16 interleaved [1, samples * channels]
            channels = len(frame.layout.channels)
            session.push_audio(data.reshape(-1, channels), frame.sample_rate)
    except MediaStreamError:
        pass


async def drain_video(track: MediaStreamTrack, session: Session, counts: dict) -> None:
    last = 0.0
    try:
        while True:
            frame = await track.recv()  # always drained; converted only when the sampler wants one
            counts["video"] += 1
            now = time.monotonic()
            if now - last >= 1 / VIDEO_FPS:
                last = now
                session.push_video(frame.to_ndarray(format="bgr24"))
    except MediaStreamError:
        pass


def _loopback_sdp(sdp: str) -> str:
    """Drop remote candidates that are not on 127.0.0.1 (second guard for loopback-only serving)."""
    return "".join(line for line in sdp.splitlines(keepends=True)
                   if not line.startswith("a=candidate") or " 127.0.0.1 " in line)


async def offer(request: web.Request) -> web.Response:
    from ..server import ENGINE, LOOPBACK, METRICS, PEERS

    engine, metrics = request.app[ENGINE], request.app[METRICS]

    def refuse(status: int, message: str, reason: str) -> web.Response:
        metrics.rejected.labels(reason).inc()
        return web.json_response({"error": message}, status=status)

    if (request.content_length or 0) > MAX_OFFER:
        return refuse(413, f"offer larger than {MAX_OFFER} bytes", "offer_too_large")
    try:
        body = json.loads(await request.text())
        sdp, kind = body["sdp"], body["type"]
        if kind != "offer" or not isinstance(sdp, str):
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return refuse(400, "the body must be JSON {\"sdp\": \"...\", \"type\": \"offer\"}", "bad_offer")
    if not re.search(r"^m=audio ", sdp, re.M):
        return refuse(400, "the offer has no audio: Tutti needs a microphone track", "no_audio")
    try:
        session = engine.add_session()
    except EngineError as e:
        return refuse(503, str(e), "session_limit")
    pc = RTCPeerConnection()
    peers: set = request.app[PEERS]
    peers.add(pc)
    counts = {"video": 0}
    tasks: list[asyncio.Task] = []
    speech = SpeechTrack(session)

    async def close() -> None:
        engine.remove_session(session)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        peers.discard(pc)
        await pc.close()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            tasks.append(asyncio.create_task(drain_audio(track, session)))
        elif track.kind == "video":
            tasks.append(asyncio.create_task(drain_video(track, session, counts)))

    @pc.on("datachannel")
    def on_channel(channel) -> None:
        async def events() -> None:
            step, vision_step = 0, None
            while channel.readyState == "open" and not session.closed:
                await asyncio.sleep(0.1)
                if session.vision_changes is not None and session.vision_step != vision_step:
                    vision_step = session.vision_step  # the changed-patch overlay
                    grid, changed, recomputed = session.vision_changes
                    channel.send(json.dumps({"type": "vision", "grid": grid, "changed": changed,
                                             "recomputed": recomputed}))
                t = session.timings
                if t.steps != step:
                    step = t.steps
                    channel.send(json.dumps({"type": "timings", "steps": t.steps, "late_frames": t.late_frames,
                                             "video_frames": counts["video"], "stages": t.stages}))
        tasks.append(asyncio.create_task(events()))
        speech.channel = channel

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed", "disconnected"):
            await close()

    pc.addTrack(speech)
    try:
        sdp = _loopback_sdp(sdp) if request.app[LOOPBACK] else sdp
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except (ValueError, RuntimeError) as e:
        await close()
        return refuse(400, f"cannot use this offer: {e}", "bad_sdp")
    return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type,
                              "session": session.id})
