"""The WebSocket protocol's messages (docs/protocol.md), written and read here for both ends: the server's
`/ws` handler, the Python client, and the WebRTC data channel's JSON events.

Binary messages are audio, int16 little-endian mono PCM; text messages are JSON objects with a "type".
A message that does not parse raises ProtocolError, whose text is what the other end is told.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from core.audio import from_pcm16, to_pcm16
from core.errors import InputError

MAX_MESSAGE = 8 * 2**20  # bytes: a 1080p raw frame in base64 fits; the server closes on more (code 1009)
MAX_IMAGE_SIDE = 4096
RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000)  # input, Hz


class ProtocolError(InputError):
    """A message the protocol does not allow (bad JSON, half a sample, a malformed image); `reason` labels
    the refusal in the server's metrics."""

    def __init__(self, text: str, reason: str = "bad_message") -> None:
        super().__init__(text)
        self.reason = reason


def message(kind: str, **fields: Any) -> str:
    """A text message: {"type": kind, **fields} as JSON."""
    return json.dumps({"type": kind, **fields})


def parse(text: str) -> dict[str, Any]:
    """A text message as a dict with a "type"."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        data = None
    if not isinstance(data, dict) or "type" not in data:
        raise ProtocolError("text messages must be JSON objects with a 'type'", "bad_json")
    return data


def audio(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] -> a binary audio message."""
    return to_pcm16(samples).tobytes()


def parse_audio(data: bytes) -> np.ndarray:
    """A binary audio message -> float32 samples."""
    if len(data) % 2:
        raise ProtocolError("audio must be whole int16 samples", "bad_audio")
    return from_pcm16(data)


def image(frame: np.ndarray) -> str:
    """A BGR uint8 camera frame as an `image` message."""
    h, w = frame.shape[:2]
    data = base64.b64encode(np.ascontiguousarray(frame, np.uint8).tobytes()).decode()
    return message("image", width=w, height=h, encoding="bgr24", data=data)


def parse_image(msg: dict[str, Any]) -> np.ndarray:
    """An `image` message -> the BGR frame [height, width, 3]."""
    try:
        width, height = int(msg["width"]), int(msg["height"])
        data = base64.b64decode(msg["data"], validate=True)
    except (KeyError, TypeError, ValueError, OverflowError, binascii.Error) as e:  # OverflowError: int(inf)
        raise ProtocolError(f"an image needs integer width and height and base64 data ({e})") from None
    if msg.get("encoding", "bgr24") != "bgr24":
        raise ProtocolError("only encoding 'bgr24' (raw BGR bytes, row by row) is accepted")
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise ProtocolError(f"image sides must lie in 1..{MAX_IMAGE_SIDE}")
    if len(data) != width * height * 3:
        raise ProtocolError(f"{len(data)} bytes do not make a {width}x{height} BGR image")
    return np.frombuffer(data, np.uint8).reshape(height, width, 3)


def parse_rate(msg: dict[str, Any], default: int) -> int:
    """The input rate a `hello` message declares: one of RATES (resampling from an odd rate such as 8001 Hz would
    build a kernel of tens of MB, up to GBs, on the loop that every session shares)."""
    rate = msg.get("sample_rate", default)
    if rate not in RATES:
        raise ProtocolError(f"sample_rate must be one of {', '.join(map(str, RATES))}")
    return int(rate)
