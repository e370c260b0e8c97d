"""A small Python client for the WebSocket protocol (docs/protocol.md), built on `websockets`."""
from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field

import numpy as np
import websockets


@dataclass
class Reply:
    audio: np.ndarray  # float32 at `sample_rate`
    sample_rate: int
    captions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def converse(url: str, audio: np.ndarray, rate: int, image: np.ndarray | None = None,
                   listen_after: float = 1.0, realtime: bool = True) -> Reply:
    """Send mono float audio (20 ms pieces, paced like a microphone when `realtime`) and an optional BGR
    image, keep listening `listen_after` seconds past the end, and return what the assistant said."""
    async with websockets.connect(url, max_size=8 * 2**20) as ws:
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise ConnectionError(f"server refused the session: {ready.get('message', ready)}")
        out_rate = int(ready["sample_rate"])
        await ws.send(json.dumps({"type": "hello", "sample_rate": rate}))
        reply = Reply(np.zeros(0, np.float32), out_rate)
        chunks: list[np.ndarray] = []

        async def receive() -> None:
            async for message in ws:
                if isinstance(message, bytes):
                    chunks.append(np.frombuffer(message, "<i2").astype(np.float32) / 32768)
                    continue
                data = json.loads(message)
                if data["type"] == "caption":
                    reply.captions.append(data["text"])
                elif data["type"] == "error":
                    reply.errors.append(data["message"])

        listener = asyncio.create_task(receive())
        if image is not None:
            h, w = image.shape[:2]
            await ws.send(json.dumps({"type": "image", "width": w, "height": h, "encoding": "bgr24",
                                      "data": base64.b64encode(np.ascontiguousarray(image, np.uint8).tobytes()).decode()}))
        piece = rate // 50
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        for i in range(0, len(pcm), piece):
            await ws.send(pcm[i:i + piece].tobytes())
            if realtime:
                await asyncio.sleep(0.02)
        await asyncio.sleep(listen_after)
        await ws.send(json.dumps({"type": "bye"}))
        await asyncio.wait_for(listener, timeout=5)
        reply.audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return reply


class _FileTrack:
    """Builds an aiortc audio track that plays mono float audio in 20 ms frames at real-time pace."""

    @staticmethod
    def make(audio: np.ndarray, rate: int):
        import fractions
        import time

        import av
        from aiortc import MediaStreamTrack

        class FileTrack(MediaStreamTrack):
            kind = "audio"

            def __init__(self) -> None:
                super().__init__()
                self.sent, self.start = 0, None
                self.pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)

            async def recv(self) -> av.AudioFrame:
                piece = rate // 50
                if self.start is None:
                    self.start = time.monotonic()
                await asyncio.sleep(max(0.0, self.start + self.sent / rate - time.monotonic()))
                data = self.pcm[self.sent:self.sent + piece]
                data = np.pad(data, (0, piece - len(data)))  # silence once the file is over
                frame = av.AudioFrame.from_ndarray(data[None], format="s16", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = rate, self.sent, fractions.Fraction(1, rate)
                self.sent += piece
                return frame

        return FileTrack()


async def webrtc_session(base_url: str, audio: np.ndarray, rate: int = 48_000, seconds: float = 2.0) -> Reply:
    """A WebRTC session (aiortc) against `tutti serve`: plays `audio` as the microphone for `seconds` and
    returns the speech received (48 kHz) and the captions from the data channel."""
    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    pc = RTCPeerConnection()
    reply = Reply(np.zeros(0, np.float32), 48_000)
    chunks: list[np.ndarray] = []
    tasks: list[asyncio.Task] = []

    async def drain(track) -> None:
        try:
            while True:
                frame = await track.recv()
                data = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
                chunks.append(data.astype(np.float32) / 32768)
        except MediaStreamError:
            pass

    @pc.on("track")
    def on_track(track) -> None:
        tasks.append(asyncio.create_task(drain(track)))

    channel = pc.createDataChannel("events")

    @channel.on("message")
    def on_message(message: str) -> None:
        data = json.loads(message)
        if data.get("type") == "caption":
            reply.captions.append(data["text"])

    pc.addTrack(_FileTrack.make(audio, rate))
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
