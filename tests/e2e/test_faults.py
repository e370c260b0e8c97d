"""Network faults on loopback: an aiortc client reaches the server through a UDP relay (tests/support/relay.py)
that drops and delays packets. A session on a poor network keeps answering; a session whose network is gone
ends and frees its engine row and its peer connection, counted by cause. Real sockets on 127.0.0.1."""
from __future__ import annotations

import asyncio
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

import aiohttp
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy

from assistant.access import Timeouts
from assistant.engine import Engine
from assistant.loader import ECHO, load_model
from assistant.server import WEBRTC
from core.audio import from_pcm16
from tests.support.loopback import serving
from tests.support.relay import HOST, UdpRelay
from tests.support.webrtc_client import FileTrack

RATE = 48_000
SHORT = Timeouts(connect=5.0, no_media=1.0, tick=0.1)
CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )(\d+)( typ host.*)$", re.M)
TONE_AT, TONE_HZ = 1.5, 300.0  # the user starts "speaking" 1.5 s into the call
LOUD = 0.02  # rms of a 20 ms piece that counts as speech (the tone comes back near 0.025, silence under 0.001)


def echo_engine() -> Engine:
    """The bundled codec with no LM: its round trip gives back what the user said (a tone stays a tone, silence
    stays silent), so hearing the tone proves the media went both ways. Random weights would not: their
    output hardly depends on the input."""
    return Engine(load_model(ECHO).codec, max_sessions=2)


def through(sdp: str, port: int) -> tuple[str, int]:
    """`sdp` with its one ICE host candidate moved to `port` (the relay), and the port it had."""
    ports = {int(m.group(2)) for m in CANDIDATE.finditer(sdp)}
    assert len(ports) == 1, f"expected one bundled 127.0.0.1 candidate, got {ports}"
    kept = "".join(line for line in sdp.splitlines(keepends=True)
                   if not line.startswith("a=candidate") or CANDIDATE.match(line.rstrip("\r\n")))
    return CANDIDATE.sub(lambda m: f"{m.group(1)}{port}{m.group(3)}", kept), ports.pop()


@dataclass
class Call:
    """A client session in progress: its peer connection, its microphone and the server's speech as it arrives."""

    pc: RTCPeerConnection
    mic: FileTrack
    received: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (monotonic arrival, 48 kHz mono)

    def heard(self, start: float, end: float) -> np.ndarray:
        """What arrived between `start` and `end` seconds on the microphone's clock."""
        t0 = self.mic.start or 0.0
        pieces = [piece for t, piece in self.received if t0 + start <= t < t0 + end]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def onset(self, after: float) -> float | None:
        """Seconds on the microphone's clock when the first loud piece arrived after `after`."""
        t0 = self.mic.start or 0.0
        return next((t - t0 for t, piece in self.received if t - t0 >= after and rms(piece) > LOUD), None)


@asynccontextmanager
async def relayed_call(url: str, relay: UdpRelay, audio: np.ndarray) -> AsyncIterator[Call]:
    """An aiortc session with `audio` as the microphone whose every packet crosses `relay`: the offer's
    candidate is moved to the relay's server side and the answer's to its client side (max-bundle, so that
    there is one of each)."""
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    call = Call(pc, FileTrack(audio, RATE))
    tasks: list[asyncio.Task] = []

    async def drain(track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                pcm = from_pcm16(frame.to_ndarray()).reshape(-1, len(frame.layout.channels)).mean(axis=1)
                call.received.append((time.monotonic(), pcm))
        except MediaStreamError:
            pass

    pc.on("track", lambda track: tasks.append(asyncio.create_task(drain(track))))
    pc.addTrack(call.mic)
    pc.addTransceiver("audio", direction="recvonly")
    pc.createDataChannel("events")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer, client_port = through(pc.localDescription.sdp, relay.server_side[1])
        relay.client = (HOST, client_port)
        async with aiohttp.ClientSession() as http:
            response = await http.post(url + "/offer", json={"sdp": offer, "type": "offer"})
            assert response.status == 200, await response.text()
            answer = await response.json()
        sdp, server_port = through(answer["sdp"], relay.client_side[1])
        relay.server = (HOST, server_port)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        yield call
    finally:
        await pc.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def tone(seconds: float, silence: float = 0.0) -> np.ndarray:
    """`silence` seconds of nothing, then a tone: the microphone of a user who starts speaking."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = (0.4 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    wave[:int(silence * RATE)] = 0.0
    return wave


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio ** 2))) if audio.size else 0.0


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / RATE)[np.argmax(spectrum)])


async def closed_counts(url: str) -> dict[str, float]:
    """`tutti_sessions_closed_total` by cause, from /metrics."""
    async with aiohttp.ClientSession() as http:
        metrics = await (await http.get(url + "/metrics")).text()
    found = re.findall(r'^tutti_sessions_closed_total\{cause="(\w+)"\} (\S+)$', metrics, re.M)
    return {cause: float(n) for cause, n in found if float(n)}


async def until(condition, within: float, what: str) -> float:
    """Wait for `condition()`; the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < within, f"{what}: not within {within} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.asyncio
async def test_five_percent_loss_and_jitter_keep_the_session_answering():
    """5% loss and 30 ± 10 ms of jitter each way (every packet held uniform 20..40 ms, so they may reorder),
    from the first ICE check on: the session connects, is never taken for silent (no_media is 1 s here), and
    the client hears its tone echoed back, starting soon after it began to speak."""
    engine = echo_engine()
    async with serving(engine, timeouts=SHORT) as (url, app):
        relay = await UdpRelay.open(seed=29)
        relay.loss, relay.jitter = 0.05, (0.020, 0.040)
        try:
            async with relayed_call(url, relay, tone(5.0, silence=TONE_AT)) as call:
                await until(lambda: call.pc.connectionState == "connected", 4.0, "connected through the relay")
                await until(lambda: call.mic.start is not None, 1.0, "microphone started")
                await asyncio.sleep(call.mic.start + 5.0 - time.monotonic())
                assert len(engine.sessions) == 1 and len(app[WEBRTC].peers) == 1
        finally:
            relay.close()
        assert await closed_counts(url) == {}
    onset = call.onset(after=0.3)
    quiet, speech = call.heard(0.3, TONE_AT), call.heard(onset or TONE_AT, 5.0)
    up, down = relay.upstream, relay.downstream
    print(f"\nloss up {up.loss:.1%} of {up.forwarded + up.dropped}, down {down.loss:.1%} of "
          f"{down.forwarded + down.dropped}; reordered up {up.reordered} down {down.reordered}; held "
          f"{np.median(up.delays + down.delays) * 1e3:.1f} ms median, {min(up.delays + down.delays) * 1e3:.1f}.."
          f"{max(up.delays + down.delays) * 1e3:.1f} ms; rms before the tone {rms(quiet):.4f}, during "
          f"{rms(speech):.4f} (peak {peak_hz(speech):.0f} Hz); echo onset {onset} s (tone at {TONE_AT} s)")
    for link in (up, down):
        assert link.forwarded > 150  # 50 audio packets a second, plus RTCP, SCTP and ICE checks
        assert 0.02 < link.loss < 0.09
        assert min(link.delays) >= 0.0195 and 0.025 < np.median(link.delays) < 0.045  # late: a busy event loop
    assert up.reordered + down.reordered > 0  # the jitter let packets overtake each other
    # aiortc's audio jitter buffer (16 packets, 4 prefetched) stays full once a packet is lost and then discards
    # about a fifth of the frames at 5% loss, on both ends (aiortc issue #543): less comes back, and later
    # (about 0.3 s after the tone began on a clean relay, 1.0-1.4 s through this one).
    assert onset is not None and TONE_AT < onset < TONE_AT + 2.5
    assert len(speech) > 0.5 * (5.0 - onset) * RATE  # the server's track kept arriving
    assert rms(quiet) < LOUD / 4 and rms(speech) > max(LOUD / 2, 8 * rms(quiet))  # silence came back as silence,
    assert peak_hz(speech) == pytest.approx(TONE_HZ, abs=75)  # the tone as a tone (the echo of silence peaks high)


@pytest.mark.asyncio
async def test_total_loss_ends_the_session_and_frees_it():
    """A connected, speaking session whose network then drops every packet is ended and its engine row and peer
    connection freed, counted as "no_media" (our deadline) or "failed" (aiortc's connection state), whichever
    comes first. With the production defaults (30 s without audio ends a session, and aioice's consent checks,
    every 4-6 s, give up after 6 misses, some 27-39 s) 40 s of total loss ends a session, by no_media when
    consent is slower (as measured: 30.1 s). Here no_media is 1 s and the blackhole lasts 3 s: the session must be
    gone long before aioice's first consent check could even fail, so the deadline is what ends it."""
    engine = echo_engine()
    async with serving(engine, timeouts=SHORT) as (url, app):
        relay = await UdpRelay.open(seed=40)
        try:
            async with relayed_call(url, relay, tone(6.0)) as call:
                await until(lambda: call.pc.connectionState == "connected", 4.0, "connected through the relay")
                await until(lambda: call.onset(after=0.0) is not None, 2.0, "the echo heard")
                assert len(engine.sessions) == 1 and len(app[WEBRTC].peers) == 1
                relay.blackhole = True
                dark = time.monotonic()
                forwarded = relay.upstream.forwarded, relay.downstream.forwarded
                closed = await until(lambda: not engine.sessions and not app[WEBRTC].peers,
                                     SHORT.no_media + 2.0, "the session ended and freed")
                await asyncio.sleep(max(0.0, dark + SHORT.no_media + 2.0 - time.monotonic()))
                dropped = relay.upstream.dropped, relay.downstream.dropped
                assert (relay.upstream.forwarded, relay.downstream.forwarded) == forwarded
        finally:
            relay.close()
        counts = await closed_counts(url)
    print(f"\nclosed {closed:.2f} s into the blackhole, cause {counts}; dropped meanwhile up {dropped[0]} "
          f"down {dropped[1]}")
    assert sum(counts.values()) == 1 and set(counts) <= {"no_media", "failed"}, counts
    assert SHORT.no_media - 0.2 < closed < SHORT.no_media + 1.0 or "failed" in counts
    assert dropped[0] > 50  # the client kept sending into the void: nothing got through
