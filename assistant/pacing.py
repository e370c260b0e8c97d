"""Phase locking shared by the engine's clock and the WebRTC track's send grid."""
from __future__ import annotations


def wrapped_phase(error: float, period: float) -> float:
    """A timing error folded into [-period / 2, period / 2): on a periodic grid being early by a whole period
    is being on time, so jitter of any size pulls a locked grid by at most half a period."""
    return (error + period / 2) % period - period / 2
