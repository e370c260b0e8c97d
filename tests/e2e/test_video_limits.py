"""Camera frames above the size limit never reach the vision encoder, and are counted; frames within it reach the
session. A VP8 key frame that declares a huge size is dropped before libvpx sees it. A real aiortc peer on 127.0.0.1
sends VP8 video of each size."""
from __future__ import annotations

import asyncio

import aiohttp
import aiortc.rtcrtpsender
import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.codecs.vpx import VpxPayloadDescriptor

from assistant.engine import Engine
from assistant.server import WEBRTC
from assistant.transport.messages import MAX_IMAGE_SIDE
from assistant.transport.vp8 import declared_size
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


async def send_video(url: str, engine: Engine, width: int, height: int, app=None) -> tuple[bool, str]:
    """Whether the session got a camera frame, and the server's metrics, after 2 s of video of that size; with
    `app`, also that no frame was decoded for the peer at all."""
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
            if app is not None:
                assert [peer.video_frames for peer in app[WEBRTC].peers] == [0]
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


def claim_size(side: int):
    """aiortc's encoder factory for this (hostile) client, its VP8 key frames rewritten to declare side x side."""
    make = aiortc.rtcrtpsender.get_encoder

    def get_encoder(codec):
        encoder = make(codec)
        encode = encoder.encode

        def forged(frame, force_keyframe=False):
            payloads, timestamp = encode(frame, force_keyframe)
            descriptor, data = VpxPayloadDescriptor.parse(payloads[0])
            if descriptor.partition_start and declared_size(data) not in (None, (0, 0)):
                payloads[0] = bytes(descriptor) + data[:6] + side.to_bytes(2, "little") * 2 + data[10:]
            return payloads, timestamp

        encoder.encode = forged
        return encoder

    return get_encoder


@pytest.mark.asyncio
async def test_a_key_frame_declaring_16383_pixels_a_side_never_reaches_the_decoder(monkeypatch):
    engine = Engine(random_codec(), max_sessions=2)
    async with serving(engine) as (url, app):
        monkeypatch.setattr(aiortc.rtcrtpsender, "get_encoder", claim_size(16383))
        seen, metrics = await send_video(url, engine, 64, 64, app)
        assert not seen and 'tutti_rejected_total{reason="frame_too_large"}' in metrics
