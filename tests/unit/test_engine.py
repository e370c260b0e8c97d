"""The engine and sessions: batched steps, late sessions, join/leave, echo and model modes, the clock."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from assistant.engine import Engine, EngineError
from assistant.model.config import lm_preset
from assistant.model.lm import StreamingLM
from assistant.session import Session
from core.audio import resample
from core.errors import CodecInputError
from encoders import SiglipVision, vision_preset

from ..conftest import random_codec

RATE = 48_000  # what WebRTC delivers


def frames_from(session) -> np.ndarray:
    """All speech delivered to a session so far, concatenated."""
    parts = []
    while (out := session.pop_output()) is not None:
        parts.append(out.audio)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


@pytest.fixture
def codec():
    return random_codec()


def speech(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def feed(session, audio: np.ndarray, chunk: int = 960) -> None:  # 20 ms pieces, as WebRTC sends them
    for i in range(0, len(audio), chunk):
        session.push_audio(audio[i:i + chunk], RATE)


def test_echo_mode_gives_the_offline_round_trip(codec):
    engine = Engine(codec)
    a, b = engine.add_session(), engine.add_session()
    sa, sb = speech(1.0, 1), speech(1.0, 2)
    feed(a, sa)
    feed(b, sb)
    steps = int(1.0 / engine.frame_seconds) - 1
    for _ in range(steps):
        engine.step()
    for session, audio in ((a, sa), (b, sb)):
        wav = resample(torch.from_numpy(audio), RATE, codec.sample_rate)[: steps * codec.frame_size]
        with torch.inference_mode():
            expected = codec.decode(codec.encode(wav[None, None]))[0, 0].numpy()
        got = frames_from(session)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_late_session_gets_silence_and_does_not_disturb_others(codec):
    alone = Engine(codec)
    solo = alone.add_session()
    engine = Engine(codec)
    busy, late = engine.add_session(), engine.add_session()
    audio = speech(0.8, 3)
    feed(solo, audio)
    feed(busy, audio)
    for _ in range(8):
        alone.step()
        engine.step()
    np.testing.assert_allclose(frames_from(busy), frames_from(solo), atol=1e-5)  # batch size 2 vs 1: rounding
    assert late.timings.late_frames == 8 and late.timings.steps == 8


def lm_for(codec, vision: bool = False) -> StreamingLM:
    cfg = lm_preset("test").with_(card=codec.cfg.bins)
    if not vision:
        cfg = cfg.with_(vision_dim=0, vision_tokens=0)
    else:
        v = vision_preset("test")
        cfg = cfg.with_(vision_dim=v.hidden, vision_tokens=v.tokens)
    torch.manual_seed(0)
    return StreamingLM(cfg).eval()


def test_eight_sessions_in_one_batch_and_one_leaving_changes_nothing_for_the_others(codec):
    lm = lm_for(codec)
    runs = []
    for leave in (False, True):
        engine = Engine(codec, lm)
        sessions = [engine.add_session(seed=i) for i in range(8)]
        for i, s in enumerate(sessions):
            feed(s, speech(1.0, i))
        for step in range(10):
            if leave and step == 4:
                engine.remove_session(sessions[3])
            engine.step()
        runs.append([frames_from(s) for s in sessions])
    for i in range(8):
        if i != 3:
            np.testing.assert_allclose(runs[0][i], runs[1][i], atol=1e-5)
    assert len(runs[1][3]) == 4 * codec.frame_size and len(runs[0][0]) == 10 * codec.frame_size
    assert any(np.abs(r).max() > 0 for r in runs[0])  # the model speaks (random weights: noise)


def test_vision_frames_reach_the_model(codec):
    lm = lm_for(codec, vision=True)
    with torch.no_grad():
        for layer in lm.transformer:
            layer.gate.linear_out.weight.normal_()
    torch.manual_seed(0)
    vision = SiglipVision(vision_preset("test")).eval()
    engine = Engine(codec, lm, vision=vision, greedy=True)
    seen, blind = engine.add_session(), engine.add_session()
    for s in (seen, blind):
        feed(s, speech(0.5, 0))
    seen.push_video((np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8))
    engine.step()
    rows = engine._rows(2)["lm"]  # the two sessions' state rows
    vis = rows["vision"]
    assert vis["on"].tolist() == [True, False] and vis["k"][0].abs().sum() > 0
    with torch.inference_mode():  # what the LM would see next for both rows: identical but for vision
        logits = lm.text_linear(lm.temporal(torch.zeros(2, lm.cfg.n_q + 1, 1, dtype=torch.long), rows))
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)


def test_engine_refuses_mismatched_models_and_too_many_sessions(codec):
    with pytest.raises(EngineError, match="does not fit the codec"):
        Engine(codec, StreamingLM(lm_preset("test").with_(vision_dim=0, vision_tokens=0)))
    with pytest.raises(EngineError, match="echo mode"):
        Engine(codec, vision=SiglipVision(vision_preset("test")))
    engine = Engine(codec, max_sessions=2)
    engine.add_session(), engine.add_session()
    with pytest.raises(EngineError, match="session limit"):
        engine.add_session()


def test_bad_audio_is_refused_by_the_session(codec):
    s = Engine(codec).add_session()
    with pytest.raises(CodecInputError, match="int16 or float"):
        s.push_audio(np.zeros(10, np.int32), RATE)
    with pytest.raises(CodecInputError, match="NaN"):
        s.push_audio(np.full(10, np.nan, np.float32), RATE)


@pytest.mark.asyncio
async def test_the_clock_steps_sessions_that_join_and_leave_while_it_runs(codec):
    engine = Engine(codec)
    stop = asyncio.Event()
    runner = asyncio.create_task(engine.run(stop))
    first = engine.add_session()
    feed(first, speech(0.5, 1))
    await asyncio.sleep(0.3)
    second = engine.add_session()
    await asyncio.sleep(0.3)
    engine.remove_session(first)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(runner, timeout=2)
    assert first.closed and first.timings.steps >= 2 and second.timings.steps >= 1
    assert engine.sessions == [second]


def test_camera_is_sampled_more_often_while_the_user_speaks(codec):
    lm = lm_for(codec, vision=True)
    vision = SiglipVision(vision_preset("test")).eval()
    frame = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    encoded = {}
    for voice in ("silent", "speaking"):
        engine = Engine(codec, lm, vision=vision, greedy=True)
        s = engine.add_session()
        audio = speech(2.0, 1) if voice == "speaking" else np.zeros(96_000, np.float32)
        feed(s, audio)
        steps = []
        for step in range(18):
            s.push_video(frame)  # a camera offers a frame every step
            engine.step()
            if s.vision_step == step:
                steps.append(step)
        encoded[voice] = steps
    assert encoded["silent"] == [0, 6, 12]
    assert encoded["speaking"] == list(range(0, 18, 2))
    assert s.vision_changes is not None and s.vision_changes[0] == vision_preset("test").grid


def test_clock_moves_towards_just_after_input_frames_complete(codec):
    from assistant.engine import PHASE_GUARD

    engine = Engine(codec)
    period = engine.frame_seconds
    assert engine._phase_shift() == 0.0  # no session, nothing to align to
    session = engine.add_session()
    engine._started = 100.0
    for since, direction in [(0.05, -1), (PHASE_GUARD + period - 0.005, 1), (PHASE_GUARD, 0)]:
        session.last_ready = engine._started - since
        shift = engine._phase_shift()
        assert np.sign(round(shift, 9)) == direction, (since, shift)
        assert abs(shift) <= period / 4
    session.last_ready = 50.0  # input stopped long ago: ignored
    assert engine._phase_shift() == 0.0


def test_session_stamps_when_frames_complete(codec):
    session = Engine(codec).add_session()
    frame = session.frame_size
    session.push_audio(np.zeros(frame // 2, np.float32), session.sample_rate)
    assert session.last_ready is None
    session.push_audio(np.zeros(frame, np.float32), session.sample_rate)
    stamped = session.last_ready
    assert stamped is not None
    session.next_frame()
    session.deliver(np.zeros(frame, np.float32), "")
    assert session.pop_output().ready_at == stamped
    session.next_frame()  # nothing whole left: late, and its output has no input time
    session.deliver(np.zeros(frame, np.float32), "")
    assert session.pop_output().ready_at is None


@pytest.mark.asyncio
async def test_clock_steps_as_soon_as_every_session_has_its_frame(codec):
    engine = Engine(codec)
    loop = asyncio.get_running_loop()
    engine._loop, engine._wake = loop, asyncio.Event()
    first, second = engine.add_session(), engine.add_session()
    frame = np.zeros(first.frame_size, np.float32)
    stop = asyncio.Event()

    def push(*sessions) -> None:
        for s in sessions:
            s.push_audio(frame, s.sample_rate)

    async def later(*sessions) -> None:
        await asyncio.sleep(0.02)
        push(*sessions)

    def stepped() -> None:  # what a step does to the clock's view: frames taken, a new start time
        engine._started = time.monotonic()
        for s in engine.sessions:
            s.next_frame()

    push(first, second)
    stepped()
    # Only one session's frame is in: the clock keeps to its deadline for the other.
    feeder = asyncio.create_task(later(first))
    assert not await engine._until(loop.time() + 0.3, 0.0, stop)
    await feeder
    # The other's comes: it wakes at once rather than at a deadline 30 s away.
    feeder = asyncio.create_task(later(second))
    assert await asyncio.wait_for(engine._until(loop.time() + 30, 0.0, stop), timeout=10)
    await feeder
    # Frames that are in before the earliest time for a step wait for it (no steps in a burst).
    stepped()
    push(first, second)
    earliest = loop.time() + 0.1
    assert await engine._until(loop.time() + 30, earliest, stop)
    assert loop.time() >= earliest
    # A session sending ahead (two frames waiting) gets no early steps: the clock must not race.
    stepped()
    push(first, second, second)
    assert not await engine._until(loop.time() + 0.2, 0.0, stop)
    # A session that stopped sending does not hold the others back; one leaving wakes the clock.
    stepped()
    push(first)
    second.last_ready -= 1.0
    assert await asyncio.wait_for(engine._until(loop.time() + 30, 0.0, stop), timeout=10)
    second.last_ready += 1.0
    feeder = loop.call_later(0.02, engine.remove_session, second)
    assert await asyncio.wait_for(engine._until(loop.time() + 30, 0.0, stop), timeout=10)


def test_a_lasting_input_backlog_is_shed_in_quiet_frames_only(codec):
    from assistant.session import CATCH_UP_STEPS

    def behind(level: float, steps: int) -> Session:  # a session kept one frame behind
        session = Engine(codec).add_session()
        session.push_audio(np.full(session.frame_size, level, np.float32), session.sample_rate)
        for _ in range(steps):
            session.push_audio(np.full(session.frame_size, level, np.float32), session.sample_rate)
            session.next_frame()
        return session

    loud, quiet = behind(0.1, 2 * CATCH_UP_STEPS), behind(0.0, 2 * CATCH_UP_STEPS)
    frame = quiet.frame_size
    assert (loud.timings.skipped_input, loud._pending.shape[0] // frame) == (0, 1)  # speech is never skipped
    assert (quiet.timings.skipped_input, quiet._pending.shape[0] // frame) == (1, 0)
    # The frame stepped after a skip answers for its own arrival time.
    session = behind(0.0, CATCH_UP_STEPS - 1)
    session.push_audio(np.zeros(frame, np.float32), session.sample_rate)
    stamps = list(session._ready)
    session.next_frame()
    session.deliver(np.zeros(frame, np.float32), "")
    assert session.timings.skipped_input == 1 and session.pop_output().ready_at == stamps[1]
    # A client that sends two frames at a time is never a second behind: nothing is skipped.
    session = Engine(codec).add_session()
    for step in range(4 * CATCH_UP_STEPS):
        if step % 2 == 0:
            session.push_audio(np.zeros(2 * frame, np.float32), session.sample_rate)
        session.next_frame()
    assert session.timings.skipped_input == 0 and session.timings.late_frames == 0


def test_a_late_session_is_stepped_with_a_noise_floor_not_digital_silence(codec):
    """The codec and LM learnt quiet as a -60 dBFS floor; digital zeros give codes they never saw."""
    from assistant.session import quiet
    from core.audio import DITHER

    engine = Engine(codec)
    first, second = engine.add_session(seed=3), engine.add_session(seed=3)
    filled = first.next_frame()
    assert first.timings.late_frames == 1 and quiet(filled)
    assert float(filled.pow(2).mean().sqrt()) == pytest.approx(DITHER, rel=0.2)
    assert torch.equal(filled, second.next_frame())  # reproducible from the session's seed
    assert not torch.equal(filled, first.next_frame())  # noise, not one frame repeated


def test_sessions_live_in_preallocated_rows_that_joins_and_leaves_never_move(codec):
    """A leave and a join touch only their own row: the state keeps its storage, the other rows' speech is the
    same to the bit, and a newcomer in a reused row speaks exactly as one in a row nobody used before."""
    from core.state import leaves

    lm = lm_for(codec)
    voices = [speech(1.0, i) for i in range(5)]

    def run(change: str) -> tuple[list[np.ndarray], list[int], list[int]]:
        engine = Engine(codec, lm, max_sessions=4)
        before = [t.data_ptr() for t in leaves(engine._state)]
        newcomer_first = change == "fresh"  # the newcomer holds row 2 from the start
        sessions = [engine.add_session(seed=9 if newcomer_first and i == 2 else i) for i in range(4)]
        for i, s in enumerate(sessions):
            feed(s, voices[4] if newcomer_first and i == 2 else voices[i])
        for step in range(10):
            if change == "reuse" and step == 4:
                engine.remove_session(sessions[2])
                sessions[2] = engine.add_session(seed=9)
                feed(sessions[2], voices[4])
            engine.step()
        return [frames_from(s) for s in sessions], before, [t.data_ptr() for t in leaves(engine._state)]

    (kept, _, _), (changed, before, after), (fresh, _, _) = run("none"), run("reuse"), run("fresh")
    assert after == before
    for i in (0, 1, 3):
        assert np.array_equal(changed[i], kept[i])
    assert len(changed[2]) == 6 * codec.frame_size
    assert np.array_equal(changed[2], fresh[2][: len(changed[2])])
    assert np.abs(changed[2]).max() > 0


def test_the_engine_refuses_more_sessions_than_memory_holds(codec):
    lm = lm_for(codec)
    engine = Engine(codec, lm, max_sessions=2)
    assert engine.session_bytes > 0
    with pytest.raises(EngineError, match="lower --max-sessions"):
        Engine(codec, lm, max_sessions=10**12)


def test_captured_steps_replay_what_eager_steps_compute(codec):
    """The plumbing CUDA graphs need, on the CPU: every batch size's step (with and without vision) is recorded
    before any session joins and replayed on static buffers; the warm-up's writes to free rows are reset by
    the sessions that join. `lambda work: work` stands in for `CudaGraphs` (a replay runs the recorded work)."""
    lm = lm_for(codec, vision=True)
    vision = SiglipVision(vision_preset("test")).eval()
    frame = (np.random.default_rng(1).random((60, 80, 3)) * 255).astype(np.uint8)
    runs = []
    for capture in (None, lambda work: work):
        engine = Engine(codec, lm, vision=vision, max_sessions=4, capture=capture)
        sessions = [engine.add_session(seed=i) for i in range(3)]
        for i, s in enumerate(sessions):
            feed(s, speech(1.0, i))
        sessions[1].push_video(frame)
        stages = set()
        for _ in range(8):
            engine.step()
            stages |= set(engine.last_step[1])
        runs.append(([frames_from(s) for s in sessions], sorted(engine._graphs), stages))
    (eager, none, eager_stages), (replayed, graphs, replay_stages) = runs
    assert none == [] and graphs == [(n, v) for n in (1, 2, 4) for v in (False, True)]
    for a, b in zip(eager, replayed):
        assert np.array_equal(a, b) and len(a) == 8 * codec.frame_size
    assert "model" in replay_stages and "model" not in eager_stages and "lm" in eager_stages
