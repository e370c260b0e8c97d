"""`tutti client`: talk to a Tutti server from this machine's microphone, speaker and camera, over the
WebSocket protocol (docs/protocol.md)."""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import threading
from collections import deque

import numpy as np

from .desktop import device

SEND_SIDE = 320  # camera frames are sent at most this wide: the vision encoder works at 224-448 px


def cmd_client(args: argparse.Namespace) -> int:
    import cv2
    import sounddevice as sd
    import websockets

    from ..transport.local import LocalDevices

    counts = {"sent_samples": 0, "received_samples": 0, "camera_frames": 0}

    async def run() -> None:
        loop = asyncio.get_running_loop()
        outgoing: asyncio.Queue = asyncio.Queue(maxsize=200)
        speech: deque[np.ndarray] = deque(maxlen=100)
        lock = threading.Lock()

        def send_soon(message) -> None:  # from device threads into the event loop; drop if the link lags
            loop.call_soon_threadsafe(lambda: outgoing.full() or outgoing.put_nowait(message))

        def on_audio(samples: np.ndarray, rate: int) -> None:
            counts["sent_samples"] += len(samples)
            send_soon((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())

        def pull_audio() -> np.ndarray | None:
            with lock:
                return speech.popleft() if speech else None

        def on_frame(frame: np.ndarray) -> None:
            h, w = frame.shape[:2]
            if w > SEND_SIDE:
                frame = cv2.resize(frame, (SEND_SIDE, round(h * SEND_SIDE / w)), interpolation=cv2.INTER_AREA)
            counts["camera_frames"] += 1
            h, w = frame.shape[:2]
            send_soon(json.dumps({"type": "image", "width": w, "height": h, "encoding": "bgr24",
                                  "data": base64.b64encode(np.ascontiguousarray(frame).tobytes()).decode()}))

        async with websockets.connect(args.url, max_size=8 * 2**20) as ws:
            ready = json.loads(await ws.recv())
            if ready.get("type") != "ready":
                raise ConnectionError(ready.get("message", "the server refused the session"))
            await ws.send(json.dumps({"type": "hello", "sample_rate": 48_000}))

            async def sender() -> None:
                while True:
                    await ws.send(await outgoing.get())

            async def receiver() -> None:
                async for message in ws:
                    if isinstance(message, bytes):
                        audio = np.frombuffer(message, "<i2").astype(np.float32) / 32768
                        counts["received_samples"] += len(audio)
                        with lock:
                            speech.append(audio)
                    else:
                        data = json.loads(message)
                        if data["type"] == "caption":
                            print(data["text"], end="", flush=True)
                        elif data["type"] == "error":
                            print(f"\nserver: {data['message']}", file=sys.stderr)

            with LocalDevices(on_audio, pull_audio, on_frame, int(ready["sample_rate"]), device(args.mic),
                              device(args.speaker), args.camera, camera_fps=2.0):
                tasks = [asyncio.create_task(sender()), asyncio.create_task(receiver())]
                try:
                    await asyncio.wait(tasks, timeout=args.seconds or None, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    await ws.send(json.dumps({"type": "bye"}))

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except (OSError, ConnectionError, websockets.WebSocketException) as e:
        print(f"tutti: error: cannot talk to {args.url}: {e}", file=sys.stderr)
        return 2
    except sd.PortAudioError as e:
        print(f"tutti: error: audio device: {e} (see tutti desktop --list-devices)", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"tutti: error: {e}", file=sys.stderr)
        return 2
    print("\n" + " ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="talk to a server from this machine's mic, speaker and camera (WebSocket)",
                       description=__doc__.splitlines()[0])
    p.add_argument("url", help="the server's WebSocket address, e.g. ws://192.0.2.10:8080/ws")
    p.add_argument("--mic", help="input device index or name (default: the system's)")
    p.add_argument("--speaker", help="output device index or name (default: the system's)")
    p.add_argument("--camera", help="camera: a device index (0), a video file or a stream URL; none by default")
    p.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (default: until Ctrl-C)")
    p.set_defaults(func=cmd_client, errors=(ValueError,))
