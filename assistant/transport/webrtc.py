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
from contextlib import AbstractContextManager, ExitStack
from typing import Callable

import av
import numpy as np
import torch
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from core.audio import StreamingResampler, from_pcm16, to_pcm16
from core.errors import EngineError

from ..access import Admission, Deadlines, PeerAddresses, Policy, Refused, Timeouts
from ..engine import Engine
from ..metrics import Metrics
from ..pacing import wrapped_phase
from ..session import Session
from . import messages

log = logging.getLogger("tutti.webrtc")
RATE = 48_000  # Opus
PIECE = 960  # 20 ms at 48 kHz
MAX_BACKLOG_FRAMES = 1  # engine frames of speech the outgoing track may hold
SLOT_MARGIN = 0.005  # the outgoing track aims to send new speech this long after the engine delivers it
SLOT_GAIN = 0.5  # fraction of the slot grid's phase error corrected per delivery
VIDEO_FPS = 5.0
MAX_OFFER = 64 * 1024
MAX_MEDIA = 4  # m-lines an offer may hold: the page's microphone, camera, the assistant's voice, the data channel
MAX_CANDIDATES = 128  # ICE candidates an offer lists (Chromium: some per interface and m-line; 32 on a plain host)


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
    phase = wrapped_phase(lag - SLOT_MARGIN, slot)
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
                self.channel.send(messages.message("caption", text=out.text, step=out.step))
        # Speech queued beyond one engine frame is stale (e.g. made before the peer connected): skip it, or
        # it would delay everything after it for the rest of the call.
        bound = MAX_BACKLOG_FRAMES * RATE * self.session.frame_size // self.session.sample_rate
        if self.buffer.shape[0] > bound + PIECE:
            self.buffer = self.buffer[-bound:]
        if self.buffer.shape[0] >= PIECE:
            piece, self.buffer = self.buffer[:PIECE], self.buffer[PIECE:]
        else:
            piece = np.zeros(PIECE, np.float32)  # nothing to say: silence
        frame = av.AudioFrame.from_ndarray(to_pcm16(piece)[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.sent, fractions.Fraction(1, RATE)
        self.sent += PIECE
        return frame


BAD_BODY = 'the body must be JSON {"sdp": "...", "type": "offer"}'


def parse_offer(body: bytes | str, peers: PeerAddresses = PeerAddresses(),
                on_dropped: Callable[[str], None] = lambda candidate: None) -> str:
    """The SDP of a `POST /offer` body ({"sdp": ..., "type": "offer"}) that has an audio track, keeping only the
    ICE candidates that `peers` allows (`on_dropped` is told of each other one)."""
    try:
        data = json.loads(body)
        sdp, kind = data["sdp"], data["type"]
        if kind != "offer" or not isinstance(sdp, str):
            raise ValueError
    except (ValueError, KeyError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Refused(400, BAD_BODY, "bad_offer") from None
    if not re.search(r"^m=audio ", sdp, re.M):
        raise Refused(400, "the offer has no audio: Tutti needs a microphone track", "no_audio")
    if len(re.findall(r"^m=", sdp, re.M)) > MAX_MEDIA:
        raise Refused(400, f"the offer has more than {MAX_MEDIA} media sections", "too_many_media")
    if len(re.findall(r"^a=candidate", sdp, re.M)) > MAX_CANDIDATES:
        raise Refused(400, f"the offer lists more than {MAX_CANDIDATES} ICE candidates", "too_many_candidates")
    kept = []
    for line in sdp.splitlines(keepends=True):
        if line.startswith("a=candidate:") and not peers.allows(line[2:]):
            on_dropped(line.strip())
        else:
            kept.append(line)
    return "".join(kept)


class PeerSession:
    """One peer connection and the engine session it holds, which join and always leave together: media in
    (audio always drained, video sampled), the assistant's speech out, captions and events on the data channel."""

    def __init__(self, engine: Engine, on_closed: Callable[[PeerSession, str], None], admitted: AbstractContextManager,
                 timeouts: Timeouts, on_refused: Callable[[str], None] = lambda code: None) -> None:
        """`admitted`: the peer's place under the per-address limits, held as long as the session; `on_closed` is
        told once, with the cause, when the peer closes; `on_refused` of media refused (its code)."""
        self._held = ExitStack()
        try:
            self._held.enter_context(admitted)  # Refused over a per-address limit
            self.session = self._held.enter_context(engine.session())  # EngineError when every slot is taken
        except BaseException:
            self._held.close()
            raise
        self.pc = RTCPeerConnection()
        self.speech = SpeechTrack(self.session)
        self.video_frames = 0
        self.cause: str | None = None  # what ended it, once it has ended
        self._on_closed, self._on_refused = on_closed, on_refused
        self._tasks: list[asyncio.Task] = [asyncio.create_task(self._watch(timeouts))]
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.addTrack(self.speech)

    async def answer(self, sdp: str) -> RTCSessionDescription:
        """The answer to the peer's offer. Its cameras are received as VP8 only, the one video decoder behind a
        size bound (vp8.py). aiortc raises all kinds of errors (KeyError, AssertionError, AttributeError...) on
        offers it cannot use: the caller takes any of them as a bad offer."""
        vp8 = [c for c in RTCRtpReceiver.getCapabilities("video").codecs if c.mimeType.lower() == "video/vp8"]
        for _ in re.findall(r"^m=video ", sdp, re.M):
            self.pc.addTransceiver("video", direction="recvonly").setCodecPreferences(vp8)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription

    async def close(self, cause: str = "client") -> None:
        if self.cause is not None:
            return
        self.cause = cause
        self._held.close()  # the session leaves the batch first: nothing waits for this peer any more
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        self._on_closed(self, cause)
        try:
            await self.pc.close()
        except Exception:  # noqa: BLE001 - aiortc, on a peer a broken offer left half set up
            log.warning("closing a peer that aiortc had half set up", exc_info=True)

    async def _watch(self, timeouts: Timeouts) -> None:
        """End the session when it does not connect in time, sends no audio for too long, or lasts too long."""
        await self.close(await Deadlines(self.session, timeouts, lambda: self.pc.connectionState == "connected").wait())

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "disconnected"):
            await self.close("failed")
        elif self.pc.connectionState == "closed":
            await self.close()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.create_task(self._drain_audio(track)))
        elif track.kind == "video":
            self._tasks.append(asyncio.create_task(self._drain_video(track)))

    def _on_channel(self, channel) -> None:
        self._tasks.append(asyncio.create_task(self._events(channel)))
        self.speech.channel = channel

    async def _drain_audio(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()  # s16 interleaved [1, samples * channels]
                samples = from_pcm16(frame.to_ndarray()).reshape(-1, len(frame.layout.channels))
                self.session.push_audio(samples, frame.sample_rate)
        except MediaStreamError:
            pass

    async def _drain_video(self, track: MediaStreamTrack) -> None:
        last = 0.0
        try:
            while True:
                frame = await track.recv()  # always drained; converted only when the sampler wants one
                self.video_frames += 1
                now = time.monotonic()
                if max(frame.width, frame.height) > messages.MAX_IMAGE_SIDE:  # never converted (a VP8 key frame
                    self._on_refused("frame_too_large")  # may declare up to 16383 x 16383)
                elif now - last >= 1 / VIDEO_FPS:
                    last = now
                    self.session.push_video(frame.to_ndarray(format="bgr24"))
        except MediaStreamError:
            pass

    async def _events(self, channel) -> None:
        """The changed-patch overlay and the session's timings, sent as they change."""
        session, step, vision_step = self.session, 0, None
        while channel.readyState == "open" and not session.closed:
            await asyncio.sleep(0.1)
            if session.vision_changes is not None and session.vision_step != vision_step:
                vision_step = session.vision_step
                grid, changed, recomputed = session.vision_changes
                channel.send(messages.message("vision", grid=grid, changed=changed, recomputed=recomputed))
            t = session.timings
            if t.steps != step:
                step = t.steps
                channel.send(messages.message("timings", steps=t.steps, late_frames=t.late_frames,
                                              video_frames=self.video_frames, stages=t.stages))


async def read_offer(request: web.Request) -> bytes:
    """The body, read no further than MAX_OFFER (a chunked body declares no length up front)."""
    body = bytearray()
    while (request.content_length or 0) <= MAX_OFFER and len(body) <= MAX_OFFER:
        if not (chunk := await request.content.readany()):
            return bytes(body)
        body += chunk
    raise Refused(413, f"offer larger than {MAX_OFFER} bytes", "offer_too_large")


class WebRTCTransport:
    """`POST /offer`: each accepted offer becomes a PeerSession of `engine`; refusals are counted in `metrics`."""

    def __init__(self, engine: Engine, metrics: Metrics, policy: Policy = Policy(),
                 admission: Admission | None = None) -> None:
        self.engine, self.metrics, self.policy = engine, metrics, policy
        self.admission = admission or Admission(policy.limits)
        self.peers: set[PeerSession] = set()

    def _refuse(self, error: Refused) -> web.Response:
        self.metrics.reject(error.code)
        return error.response()

    async def offer(self, request: web.Request) -> web.Response:
        policy = self.policy
        try:
            policy.origins.check(request)
            policy.tokens.check(request, spend=False)  # not used up by an offer refused for its form
            if request.content_type != "application/json":
                raise Refused(415, "an offer is sent as Content-Type: application/json", "content_type")
            sdp = parse_offer(await read_offer(request), policy.peers, lambda _: self.metrics.reject("candidate_address"))
            admitted = policy.admit(request, self.admission)
            try:
                peer = PeerSession(self.engine, self._closed, admitted, policy.timeouts, self.metrics.reject)
            except EngineError as e:
                raise Refused(503, str(e), "session_limit") from None
        except Refused as e:
            return self._refuse(e)
        self.peers.add(peer)
        try:
            answer = await peer.answer(sdp)
        except Exception as e:  # noqa: BLE001 - see PeerSession.answer
            await peer.close("bad_sdp")
            return self._refuse(Refused(400, f"cannot use this offer: {e}", "bad_sdp"))
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session": peer.session.id})

    async def config(self, request: web.Request) -> web.Response:
        """`GET /config`: what the page needs before its offer: the ICE servers (TURN credentials minted now),
        whether a token is needed; asks for the same credentials as an offer, without using them up."""
        try:
            self.policy.origins.check(request)
            self.policy.tokens.check(request, spend=False)
        except Refused as e:
            return self._refuse(e)
        return web.json_response({"iceServers": self.policy.ice.config()})

    def _closed(self, peer: PeerSession, cause: str) -> None:
        self.peers.discard(peer)
        self.metrics.closed.labels(cause).inc()

    async def close(self) -> None:
        """Close every peer (the server is stopping)."""
        await asyncio.gather(*(peer.close("server") for peer in list(self.peers)), return_exceptions=True)


