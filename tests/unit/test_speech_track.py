"""The outgoing WebRTC track: 20 ms pieces, silence when idle, and its slot grid locking onto deliveries."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from assistant.session import Output, Session
from assistant.transport.webrtc import PIECE, RATE, SLOT_MARGIN, SpeechTrack, grid_shift

FRAME, SR = 1280, 16_000  # an 80 ms codec frame
SLOT = PIECE / RATE


def speech(delivered_at: float) -> Output:
    return Output(np.full(FRAME, 0.25, np.float32), "", 0, None, delivered_at)


@pytest.mark.asyncio
async def test_idle_track_sends_silence_then_speech_in_pieces():
    session = Session(FRAME, SR)
    track = SpeechTrack(session)
    idle = await track.recv()
    assert (idle.samples, idle.sample_rate, idle.pts) == (PIECE, RATE, 0)
    assert not idle.to_ndarray().any()
    session.outputs.append(speech(track.start))
    pieces = [await track.recv() for _ in range(5)]
    assert [p.pts for p in pieces] == [PIECE * i for i in range(1, 6)]
    loud = [np.abs(p.to_ndarray()).mean() > 1000 for p in pieces]
    assert loud[1:3] == [True, True] and not loud[4]  # 80 ms of speech is four pieces (resampler delay aside)


def test_grid_shift_pulls_the_slot_towards_just_after_deliveries_both_ways():
    assert grid_shift(SLOT_MARGIN, 0.0) == pytest.approx(0.0)
    assert grid_shift(0.012, 0.0) == pytest.approx(0.5 * (0.012 - SLOT_MARGIN))  # slot came late: earlier
    assert grid_shift(0.002, 0.0) == pytest.approx(0.5 * (0.002 - SLOT_MARGIN))  # too close: later
    assert grid_shift(0.019, 0.0) == pytest.approx(0.5 * (0.019 - SLOT_MARGIN - SLOT))  # just missed one: later
    assert grid_shift(SLOT_MARGIN, 2 * SLOT) == pytest.approx(SLOT / 2)  # a queue ahead is shed, 10 ms at a time


@pytest.mark.asyncio
async def test_track_moves_its_grid_by_the_shift_for_each_delivery():
    session = Session(FRAME, SR)
    track = SpeechTrack(session)
    await track.recv()
    # 0.015 would sit on the wrap (half a slot from SLOT_MARGIN), where the clock's rounding picks the side
    for lag in (0.012, 0.002):
        while track.buffer.shape[0] >= PIECE:  # play out what is queued
            await track.recv()
        start = track.start
        due = track.start + track.sent / RATE
        session.outputs.append(speech(due - lag))
        await track.recv()
        assert start - track.start == pytest.approx(grid_shift(lag, 0.0))


def test_jittery_deliveries_neither_make_the_grid_run_away_nor_wait_long():
    """Deliveries every 80 ms with +-3 ms of jitter and a 15 ms late one now and then: each is taken by the
    first slot after it. The grid settles about SLOT_MARGIN after deliveries and stays near real time."""
    rng = np.random.default_rng(0)
    start, lags = 0.0137, []
    for k in range(2000):
        delivered = 0.08 * k + rng.uniform(-0.003, 0.003) + (0.015 if k % 50 == 49 else 0.0)
        slot = start + math.ceil((delivered - start) / SLOT) * SLOT
        lags.append(slot - delivered)
        start -= grid_shift(slot - delivered, 0.0)
    settled = lags[100:]
    assert abs(start - 0.0137) < SLOT, "the grid drifted away from real time"
    assert abs(statistics.median(settled) - SLOT_MARGIN) < 0.002
    assert np.percentile(settled, 90) < SLOT_MARGIN + 0.006
