"""An aiortc client against `tutti serve`, as the tests and benchmarks drive it: a file as the microphone,
the server's speech and captions recorded."""
from __future__ import annotations

import asyncio
import fractions
import json
import time

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from assistant.client import Reply
from core.audio import from_pcm16, to_pcm16

PIECE_SECONDS = 0.02


class FileTrack(MediaStreamTrack):
    """Mono float audio played in 20 ms frames at real-time pace, then silence."""

    kind = "audio"

    def __init__(self, audio: np.ndarray, rate: int) -> None:
        super().__init__()
        self.rate, self.sent, self.start = rate, 0, None
        self.pcm = to_pcm16(audio)

    async def recv(self) -> av.AudioFrame:
        piece = round(self.rate * PIECE_SECONDS)
        if self.start is None:
            self.start = time.monotonic()
        await asyncio.sleep(max(0.0, self.start + self.sent / self.rate - time.monotonic()))
        data = self.pcm[self.sent:self.sent + piece]
        data = np.pad(data, (0, piece - len(data)))  # silence once the file is over
        frame = av.AudioFrame.from_ndarray(data[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = self.rate, self.sent, fractions.Fraction(1, self.rate)
        self.sent += piece
        return frame


async def webrtc_session(base_url: str, audio: np.ndarray, rate: int = 48_000, seconds: float = 2.0) -> Reply:
    """A WebRTC session (aiortc) against `tutti serve`: plays `audio` as the microphone for `seconds` and
    returns the speech received (48 kHz) and the captions from the data channel."""
    pc = RTCPeerConnection()
    reply = Reply(np.zeros(0, np.float32), 48_000)
    chunks: list[np.ndarray] = []
    tasks: list[asyncio.Task] = []

    async def drain(track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                chunks.append(from_pcm16(frame.to_ndarray()).reshape(-1, len(frame.layout.channels)).mean(axis=1))
        except MediaStreamError:
            pass

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        tasks.append(asyncio.create_task(drain(track)))

    channel = pc.createDataChannel("events")

    @channel.on("message")
    def on_message(message: str) -> None:
        data = json.loads(message)
        if data.get("type") == "caption":
            reply.captions.append(data["text"])

    pc.addTrack(FileTrack(audio, rate))
    pc.addTransceiver("audio", direction="recvonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http:
            response = await http.post(f"{base_url}/offer", json={"sdp": pc.localDescription.sdp,
                                                                   "type": pc.localDescription.type})
            answer = await response.json()
            if response.status != 200:
                raise ConnectionError(f"server refused the session ({response.status}): {answer.get('error')}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.sleep(seconds)
    finally:
        await pc.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    reply.audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return reply
