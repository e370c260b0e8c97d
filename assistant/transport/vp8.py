"""A bound on the camera frames libvpx decodes for a peer: each VP8 key frame's declared size is read from its
header before the decoder sees it, and frames over the bound are dropped, with the inter frames that follow
them until the next acceptable key frame. A key frame may declare up to 16383 x 16383, which libvpx would
allocate (about 400 MB) before a single pixel is checked. The server negotiates VP8 only (PeerSession), so this
is the one video decoder a peer can reach.
"""
from __future__ import annotations

from typing import Callable

import aiortc.rtcrtpreceiver
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from av.frame import Frame

KEY_FRAME_START = b"\x9d\x01\x2a"  # follows the 3-byte frame tag of every VP8 key frame (RFC 6386, 9.1)


def declared_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) that a VP8 key frame declares; None for an inter frame (it keeps the last key frame's)."""
    if not frame or frame[0] & 1:  # bit 0 of the frame tag: 0 = key frame
        return None
    if len(frame) < 10 or frame[3:6] != KEY_FRAME_START:
        return (0, 0)  # a key frame without a header: never decodable
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF


class BoundedDecoder(Decoder):
    """A peer's VP8 decoder behind the size check; `on_refused` is told (from the decoder's thread) of each
    frame dropped."""

    def __init__(self, inner: Decoder, max_side: int, on_refused: Callable[[], None]) -> None:
        self.inner, self.max_side, self.on_refused = inner, max_side, on_refused
        self.refusing = False  # the last key frame was refused: its inter frames are undecodable too

    def decode(self, encoded_frame: JitterFrame) -> list[Frame]:
        size = declared_size(encoded_frame.data)
        if size is not None:
            self.refusing = not (0 < size[0] <= self.max_side and 0 < size[1] <= self.max_side)
        if self.refusing:
            self.on_refused()
            return []
        return self.inner.decode(encoded_frame)


def bound_decoders(max_side: int, on_refused: Callable[[], None]) -> None:
    """Put every VP8 decoder that aiortc's receivers make in this process behind the size check (the receiver
    makes its decoder in its own thread, through this module-level hook)."""
    make = getattr(aiortc.rtcrtpreceiver.get_decoder, "unbounded", aiortc.rtcrtpreceiver.get_decoder)

    def get_decoder(codec):
        decoder = make(codec)
        return BoundedDecoder(decoder, max_side, on_refused) if codec.mimeType.lower() == "video/vp8" else decoder

    get_decoder.unbounded = make
    aiortc.rtcrtpreceiver.get_decoder = get_decoder
