"""The Python client of the WebSocket protocol (docs/protocol.md), built on `websockets`: a `Connection` for
live use (`tutti client`) and `converse` for one scripted turn (tests, scripts)."""
from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import numpy as np
import websockets

from .transport import messages

PIECE_SECONDS = 0.02  # audio is sent in 20 ms pieces, as a microphone delivers it


@dataclass
class Event:
    """What the server sent: speech ("audio", samples at the session's rate) or a JSON message's fields."""
    kind: str
    audio: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Connection:
    """One session on a Tutti server."""

    def __init__(self, ws: Any, ready: dict[str, Any]) -> None:
        self.ws, self.ready = ws, ready
        self.sample_rate = int(ready["sample_rate"])  # of the speech the server sends

    async def send_audio(self, samples: np.ndarray) -> None:
        """Mono float samples at the rate declared on connecting."""
        await self.ws.send(messages.audio(samples))

    async def send_image(self, frame: np.ndarray) -> None:
        """A BGR uint8 camera frame."""
        await self.ws.send(messages.image(frame))

    async def bye(self) -> None:
        await self.ws.send(messages.message("bye"))

    async def events(self) -> AsyncIterator[Event]:
        """Everything the server sends, until it closes."""
        async for raw in self.ws:
            if isinstance(raw, bytes):
                yield Event("audio", audio=messages.parse_audio(raw))
            else:
                data = messages.parse(raw)
                yield Event(data["type"], data=data)


@asynccontextmanager
async def connect(url: str, input_rate: int = 48_000, token: str | None = None) -> AsyncIterator[Connection]:
    """A session on the server at `url` (ws://HOST:PORT/ws), sending audio at `input_rate`, with `token` where
    the server asks for one; ConnectionError when the server refuses it (e.g. it is full, or the token is wrong)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        opened = await websockets.connect(url, max_size=messages.MAX_MESSAGE, additional_headers=headers)
    except websockets.InvalidStatus as e:  # refused before the upgrade: the body says why
        try:
            reason = json.loads(e.response.body)["error"]
        except (ValueError, KeyError, TypeError):
            reason = f"HTTP {e.response.status_code}"
        raise ConnectionError(f"server refused the session: {reason}") from None
    async with opened as ws:
        ready = messages.parse(await ws.recv())
        if ready["type"] != "ready":
            raise ConnectionError(f"server refused the session: {ready.get('message', ready)}")
        await ws.send(messages.message("hello", sample_rate=input_rate))
        yield Connection(ws, ready)


@dataclass
class Reply:
    audio: np.ndarray  # float32 at `sample_rate`
    sample_rate: int
    captions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def converse(url: str, audio: np.ndarray, rate: int, image: np.ndarray | None = None,
                   listen_after: float = 1.0, realtime: bool = True, token: str | None = None) -> Reply:
    """Send mono float audio (20 ms pieces, paced like a microphone when `realtime`) and an optional BGR
    image, keep listening `listen_after` seconds past the end, and return what the assistant said."""
    async with connect(url, rate, token) as conn:
        reply = Reply(np.zeros(0, np.float32), conn.sample_rate)
        chunks: list[np.ndarray] = []

        async def receive() -> None:
            async for event in conn.events():
                if event.kind == "audio":
                    chunks.append(event.audio)
                elif event.kind == "caption":
                    reply.captions.append(event.data["text"])
                elif event.kind == "error":
                    reply.errors.append(event.data["message"])

        listener = asyncio.create_task(receive())
        if image is not None:
            await conn.send_image(image)
        piece = round(rate * PIECE_SECONDS)
        for i in range(0, len(audio), piece):
            await conn.send_audio(audio[i:i + piece])
            if realtime:
                await asyncio.sleep(PIECE_SECONDS)
        await asyncio.sleep(listen_after)
        await conn.bye()
        await asyncio.wait_for(listener, timeout=5)
        reply.audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return reply


SEND_SIDE = 320  # camera frames are sent at most this wide: the vision encoder works at 224-448 px
SEND_FPS = 2.0


@dataclass
class Traffic:
    """What went each way, counted as it goes (so an interrupted session still has its counts)."""
    sent_samples: int = 0
    received_samples: int = 0
    camera_frames: int = 0


async def talk(url: str, traffic: Traffic, mic: int | str | None = None, speaker: int | str | None = None,
               camera: str | None = None, seconds: float = 0, on_caption: Callable[[str], None] = lambda text: None,
               on_error: Callable[[str], None] = lambda text: None, token: str | None = None) -> None:
    """This machine's microphone, speaker and camera as a session on the server at `url`, for `seconds` (0: until
    cancelled), counting into `traffic`."""
    import cv2

    from .transport.local import MIC_RATE, LocalDevices

    loop = asyncio.get_running_loop()
    outgoing: asyncio.Queue[np.ndarray | str] = asyncio.Queue(maxsize=200)
    speech: deque[np.ndarray] = deque(maxlen=100)
    lock = threading.Lock()

    def send_soon(item: np.ndarray | str) -> None:  # from device threads into the event loop; dropped if the link lags
        loop.call_soon_threadsafe(lambda: outgoing.full() or outgoing.put_nowait(item))

    def on_audio(samples: np.ndarray, rate: int) -> None:
        traffic.sent_samples += len(samples)
        send_soon(samples)

    def pull_audio() -> np.ndarray | None:
        with lock:
            return speech.popleft() if speech else None

    def on_frame(frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if w > SEND_SIDE:
            frame = cv2.resize(frame, (SEND_SIDE, round(h * SEND_SIDE / w)), interpolation=cv2.INTER_AREA)
        traffic.camera_frames += 1
        send_soon(messages.image(frame))

    async with connect(url, MIC_RATE, token) as conn:
        async def sender() -> None:
            while True:
                item = await outgoing.get()
                await (conn.ws.send(item) if isinstance(item, str) else conn.send_audio(item))

        async def receiver() -> None:
            async for event in conn.events():
                if event.kind == "audio":
                    traffic.received_samples += len(event.audio)
                    with lock:
                        speech.append(event.audio)
                elif event.kind == "caption":
                    on_caption(event.data["text"])
                elif event.kind == "error":
                    on_error(event.data["message"])

        with LocalDevices(on_audio, pull_audio, on_frame, conn.sample_rate, mic, speaker, camera, camera_fps=SEND_FPS):
            tasks = [asyncio.create_task(sender()), asyncio.create_task(receiver())]
            try:
                await asyncio.wait(tasks, timeout=seconds or None, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await conn.bye()
