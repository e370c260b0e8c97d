"""Camera frames as OpenCV hands them over -> the model's square RGB input in [-1, 1].

Accepted: H x W (grey), H x W x 1, H x W x 3 (BGR, OpenCV's order) or H x W x 4 (BGRA), as uint8, uint16
or float (already in [0, 1]). The frame is centre-cropped to a square (the middle of a wide frame is kept)
and resized to the model's resolution with antialiased bilinear filtering.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import FrameError

MAX_SIDE = 8192


def to_pixels(frame: np.ndarray, size: int) -> torch.Tensor:
    """frame -> [3, size, size] float32 RGB in [-1, 1] (SigLIP's normalisation: mean 0.5, std 0.5)."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.ndim == 3 and frame.shape[2] in (1, 3, 4):
        channels = frame.shape[2]
    elif frame.ndim == 2:
        channels = 0
    else:
        raise FrameError(f"a frame must be H x W or H x W x 1/3/4; got shape {frame.shape}")
    h, w = frame.shape[:2]
    if h == 0 or w == 0:
        raise FrameError("the frame is empty")
    if min(h, w) < 8:
        raise FrameError(f"the frame is {w}x{h}; at least 8x8 pixels are needed")
    if max(h, w) > MAX_SIDE:
        raise FrameError(f"the frame is {w}x{h}; sides above {MAX_SIDE} pixels are refused")
    if frame.dtype == np.uint8:
        x = torch.from_numpy(np.array(frame, copy=True)).float() / 255  # a copy: frames may be read-only buffers
    elif frame.dtype == np.uint16:
        x = torch.from_numpy(frame.astype(np.float32)) / 65535
    elif frame.dtype in (np.float32, np.float64):
        x = torch.from_numpy(frame.astype(np.float32))
        if not torch.isfinite(x).all():
            raise FrameError("the frame holds NaN or infinite values")
        x = x.clamp(0, 1)
    else:
        raise FrameError(f"frame pixels must be uint8, uint16 or float; got {frame.dtype}")
    if channels == 0:
        x = x[..., None]
    if x.shape[2] == 1:
        x = x.expand(-1, -1, 3)
    x = x[..., :3].flip(-1)  # BGR(A) -> RGB
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[top:top + side, left:left + side].permute(2, 0, 1)[None]
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)
    return (x[0].clamp(0, 1) - 0.5) / 0.5
