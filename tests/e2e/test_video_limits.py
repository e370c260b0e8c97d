"""Decoded camera frames above the size limit are never converted for the vision encoder, and are counted; frames
within it reach the session. A real aiortc peer on 127.0.0.1 sends VP8 video of each size."""
from __future__ import annotations

import asyncio

import aiohttp
import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

from assistant.engine import Engine
from assistant.transport.messages import MAX_IMAGE_SIDE
from tests.support.loopback import serving
from tests.support.webrtc_client import FileTrack

from ..conftest import random_codec


class Camera(VideoStreamTrack):
    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.image = np.full((height, width, 3), 90, np.uint8)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self.image, format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        return frame


async def send_video(url: str, engine: Engine, width: int, height: int) -> tuple[bool, str]:
    """Whether the session got a camera frame, and the server's metrics, after 2 s of video of that size."""
    pc = RTCPeerConnection()
    pc.addTrack(FileTrack(np.zeros(48_000 * 3, np.float32), 48_000))
    pc.addTrack(Camera(width, height))
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http:
            answer = await (await http.post(url + "/offer", json={"sdp": pc.localDescription.sdp,
                                                                  "type": "offer"})).json()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
            await asyncio.sleep(2.5)
            seen = bool(engine.sessions) and engine.sessions[0].video is not None
            metrics = await (await http.get(url + "/metrics")).text()
    finally:
        await pc.close()
    return seen, metrics


@pytest.mark.asyncio
async def test_oversized_camera_frames_are_refused_and_others_arrive():
    engine = Engine(random_codec(), max_sessions=2)  # echo: nobody takes the camera frame, so it stays visible
    async with serving(engine) as (url, _):
        seen, metrics = await send_video(url, engine, MAX_IMAGE_SIDE + 64, 64)
        assert not seen and 'tutti_rejected_total{reason="frame_too_large"}' in metrics
        seen, _ = await send_video(url, engine, 320, 240)
        assert seen
