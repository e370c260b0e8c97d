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
