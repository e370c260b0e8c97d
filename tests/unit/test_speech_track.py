"""The outgoing WebRTC track: 20 ms pieces, silence when idle, and its slot grid locking onto deliveries."""
from __future__ import annotations

import time

import numpy as np
import pytest

from assistant.session import Output, Session
from assistant.transport.webrtc import PIECE, RATE, SLOT_GAIN, SLOT_MARGIN, SpeechTrack

FRAME, SR = 1280, 16_000  # an 80 ms codec frame


def speech_output(delivered_ago: float) -> Output:
    return Output(np.full(FRAME, 0.25, np.float32), "", 0, None, time.monotonic() - delivered_ago)


@pytest.mark.asyncio
async def test_idle_track_sends_silence_then_speech_in_pieces():
    session = Session(FRAME, SR)
    track = SpeechTrack(session)
    idle = await track.recv()
    assert (idle.samples, idle.sample_rate, idle.pts) == (PIECE, RATE, 0)
    assert not idle.to_ndarray().any()
    session.outputs.append(speech_output(0.0))
    pieces = [await track.recv() for _ in range(5)]
    assert [p.pts for p in pieces] == [PIECE * i for i in range(1, 6)]
    loud = [np.abs(p.to_ndarray()).mean() > 1000 for p in pieces]
    assert loud[1:3] == [True, True] and not loud[4]  # 80 ms of speech is four pieces (resampler delay aside)


@pytest.mark.asyncio
async def test_slot_grid_moves_earlier_when_new_speech_waited_for_its_slot():
    session = Session(FRAME, SR)
    track = SpeechTrack(session)
    await track.recv()
    for ago, low, high in [(1.0, 0.01, 0.01), (0.015, SLOT_GAIN * (0.015 - SLOT_MARGIN), 0.01)]:
        while track.buffer.shape[0] >= PIECE:  # play out what is queued
            await track.recv()
        start = track.start
        session.outputs.append(speech_output(ago))
        await track.recv()
        assert low - 1e-9 <= start - track.start <= high + 1e-9, (ago, start - track.start)
    # Speech queued ahead of new speech is a wait too: a standing queue is shed the same way.
    session.outputs.append(speech_output(0.0))
    await track.recv()
    assert track.buffer.shape[0] >= 2 * PIECE
    start = track.start
    session.outputs.append(speech_output(0.0))
    await track.recv()
    assert start - track.start == pytest.approx(0.01)
