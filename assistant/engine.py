"""The engine: one clock per loaded model, ONE batched step for all live sessions per frame.

A step gathers every session's next input frame (silence for a late one), then
codec encode -> LM step -> codec decode on the whole batch, and hands each
session its speech and caption. Per-session streaming state lives in rows of
batched state tensors; sessions join and leave between steps without changing
what the other rows compute. With no LM ("echo" mode) the user's own codes are
decoded: a sound check of the whole media path.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from codec import MimiCodec
from core.errors import EngineError, FrameError
from core.state import leaves, map_state, reset_rows
from encoders import SiglipVision, SparseBatch, SparseSettings

from .model.lm import StreamingLM
from .model.tokenizer import TextTokenizer
from .pacing import wrapped_phase
from .preset import ModelPreset
from .session import Session

log = logging.getLogger("tutti.engine")
VOICE_HANGOVER = 12  # steps the "speaking" rate lasts after the last loud frame (about 1 s)
PHASE_GUARD = 0.01  # the clock aims to step this long after input frames complete (network jitter margin)
PHASE_GAIN = 0.5  # fraction of the phase error corrected per step
EARLIEST = 0.75  # of a frame period: the soonest a step may follow the last one when every session is ready
SPEAKING_EVERY, SILENT_EVERY = 2, 6  # steps between camera frames encoded: 6.25 / about 2 per second
WARMUP = 2  # runs of a step before it is captured (kernels chosen, caches filled)
Capture = Callable[[Callable[[], None]], Callable[[], None]]  # work -> a replay of it


class CudaGraphs:
    """A Capture that records work as CUDA graphs, all on one memory pool (they never run at the same time): a
    replay launches every kernel of the step at once, on the same buffers."""

    def __init__(self) -> None:
        self.pool = torch.cuda.graph_pool_handle()

    def __call__(self, work: Callable[[], None]) -> Callable[[], None]:
        stream = torch.cuda.Stream()  # CUDA graphs want their warm-up on a side stream
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            work()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            work()
        return graph.replay


@dataclass
class StepReport:
    seconds: float
    stages: dict[str, float]
    sessions: int
    late: int  # sessions stepped with silence because their input was late
    dropped: int  # output frames dropped because nobody read them
    skipped: int  # quiet input frames skipped to shed a lasting input backlog


class Engine:
    def __init__(self, codec: MimiCodec, lm: StreamingLM | None = None, vision: SiglipVision | None = None,
                 tokenizer: TextTokenizer | None = None, max_sessions: int = 64, greedy: bool = False,
                 vision_pool: int = 1, capture: Capture | None = None) -> None:
        """`capture`: how the device work of a step (codec encode, LM step, codec decode) is recorded once per
        batch size and replayed (`CudaGraphs()` on a GPU); None runs it eagerly."""
        self.preset = ModelPreset(codec.cfg, None if lm is None else lm.cfg, None if vision is None else vision.cfg,
                                  vision_pool)  # checks that they fit together
        self.codec, self.lm, self.vision, self.tokenizer = codec, lm, vision, tokenizer
        self.max_sessions, self.greedy = max_sessions, greedy
        self.device = next(codec.parameters()).device
        vision_bytes = 0 if vision is None else SparseBatch(vision, sessions=1).nbytes  # the change-only encoder's
        self.session_bytes = _state_bytes(self._init_state(1)) + vision_bytes
        _check_fits(self.session_bytes, max_sessions, self.device)
        self.sessions: list[Session] = []  # live, in the order they joined
        self._slots: list[Session | None] = [None] * max_sessions  # the session holding each state row
        # every session's change-only vision state, in the same rows as its streaming state
        self._encoders = None if vision is None else SparseBatch(vision, SparseSettings(pool=vision_pool),
                                                                  max_sessions)
        self._state = self._init_state(max_sessions)  # every row preallocated: joins and leaves never reallocate
        self._views: dict[int, dict] = {}  # the first n rows of the state, for a step of n rows
        # The one copy in and the one copy out per step: input frames staged on the host (pinned where a GPU
        # copies them) and copied to a static device buffer; speech and text tokens packed in a static buffer.
        pinned = self.device.type == "cuda"
        self._input = torch.zeros(max_sessions, codec.frame_size, pin_memory=pinned)
        self._frames = torch.zeros(max_sessions, codec.frame_size, device=self.device)
        self._output = torch.zeros(max_sessions, codec.frame_size + 1, device=self.device)
        self._seeing: set[int] = set()  # rows whose session has vision tokens (known here, not read back)
        self._graphs: dict[tuple[int, bool], Callable[[], None]] = {}
        if capture is not None:
            self._capture(capture)
        self._started = 0.0  # time.monotonic() of the last step
        self._lock = threading.Lock()  # joins/leaves vs. a step running in a worker thread
        self._wake: asyncio.Event | None = None  # set (thread-safely) when every session has a fresh frame
        self._loop: asyncio.AbstractEventLoop | None = None
        self.last_step: tuple[float, dict[str, float]] | None = None
        self.on_step: Callable[[StepReport], None] | None = None  # an observer (metrics), outside the data path

    @property
    def frame_seconds(self) -> float:
        return self.codec.frame_size / self.codec.sample_rate

    # -- sessions --------------------------------------------------------------------------------
    def _init_state(self, rows: int) -> dict:
        state = {"enc": self.codec.init_encode_state(rows), "dec": self.codec.init_decode_state(rows)}
        if self.lm is not None:
            state["lm"] = self.lm.init_state(rows)
        return state

    def add_session(self, seed: int = 0) -> Session:
        """A new session in the lowest free state row, reset in place (the other rows are not touched)."""
        with self._lock:
            if None not in self._slots:
                raise EngineError(f"session limit reached ({self.max_sessions})")
            row = self._slots.index(None)
            session = Session(self.codec.frame_size, self.codec.sample_rate, seed=seed)
            session.on_frame = self._frame_completed
            reset_rows(self._state, torch.arange(self.max_sessions) == row)
            if self.lm is not None:
                self._state["lm"]["seed"][row] = seed
            self._slots[row] = session
            self.sessions.append(session)
            if self._encoders is not None:
                self._encoders.reset(row)
            return session

    @contextmanager
    def session(self, seed: int = 0) -> Iterator[Session]:
        """How transports hold a session: it joins the batch on entry and always leaves it on exit."""
        session = self.add_session(seed)
        try:
            yield session
        finally:
            self.remove_session(session)

    def remove_session(self, session: Session) -> None:
        """The session's row is freed (and reset when the next session takes it)."""
        with self._lock:
            if session not in self.sessions:
                return
            row = self._slots.index(session)
            self._slots[row] = None
            self.sessions.remove(session)
            if self.lm is not None:
                self.lm.clear_vision(self._state["lm"], row)  # a free row inside a step's rows reads no vision
            self._seeing.discard(row)
            self._input[row].zero_()
            session.closed = True
        self._frame_completed()  # the others may have been waiting only for this one

    def _rows(self, n: int) -> dict:
        """Views of the state's first n rows: what a step of n rows reads and writes in place."""
        if n not in self._views:
            self._views[n] = map_state(self._state, lambda t: t[:n])
        return self._views[n]

    def _batch(self) -> int:
        """Rows a step runs: the occupied rows' span, padded to a power of two (few shapes, each captured once
        as a graph); free rows inside it are stepped with silence and their outputs dropped."""
        last = max(i for i, s in enumerate(self._slots) if s is not None)
        return min(self.max_sessions, 1 << last.bit_length())

    def _compute(self, n: int, seeing: bool) -> dict[str, float]:
        """A step's device work on rows [:n]: frames from the static input buffer, speech and text tokens into
        the static output buffer; nothing waits on the device. Returns when each stage was launched."""
        state = self._rows(n)
        t0 = time.perf_counter()
        codes = self.codec.encode_step(self._frames[:n, None], state["enc"], checked=False)[:, :, 0]
        t1 = time.perf_counter()
        if self.lm is None:
            out_codes, valid, text = codes, None, None
        else:
            out = self.lm.step(codes[:, : self.lm.cfg.n_user], state["lm"], greedy=self.greedy, checked=False,
                               vision=seeing)
            out_codes, valid, text = out.audio, out.valid, out.text
        t2 = time.perf_counter()
        audio = self.codec.decode_step(out_codes[:, :, None].clamp(min=0), state["dec"], checked=False)[:, 0]
        if valid is not None:  # the LM's first steps (its acoustic delay) have no speech yet
            audio = torch.where(valid[:, None], audio, torch.zeros((), dtype=audio.dtype, device=audio.device))
        self._output[:n, :-1] = audio
        if text is not None:
            self._output[:n, -1] = text
        return {"encode": t1 - t0, "lm": t2 - t1, "decode": time.perf_counter() - t2}

    def _capture(self, capture: Capture) -> None:
        """Record every batch size's step (with and without vision) before any session joins: the warm-up
        runs write only free rows, which a joining session resets."""
        sizes = sorted({min(self.max_sessions, 1 << i) for i in range(self.max_sessions.bit_length() + 1)})
        views = (False, True) if self.lm is not None and self.lm.cfg.has_vision else (False,)
        with torch.inference_mode():
            for n in sizes:
                for seeing in views:
                    work = functools.partial(self._compute, n, seeing)
                    for _ in range(WARMUP):
                        work()
                    self._graphs[n, seeing] = capture(work)

    # -- one frame -------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> None:
        with self._lock:
            if not self.sessions:
                return
            start = time.perf_counter()
            self._started = time.monotonic()
            n = self._batch()
            occupied = [(row, s) for row, s in enumerate(self._slots[:n]) if s is not None]
            sessions = [s for _, s in occupied]
            before = self._counts(sessions)
            for row, s in occupied:
                self._input[row] = s.next_frame()
            self._frames[:n].copy_(self._input[:n], non_blocking=True)  # the one copy in
            t0 = time.perf_counter()
            self._update_vision(occupied, self._rows(n))
            t1 = time.perf_counter()
            seeing = any(row < n for row in self._seeing)
            replay = self._graphs.get((n, seeing))
            if replay is None:
                stages = self._compute(n, seeing)
            else:
                replay()
                stages = {}
            packed = self._output[:n].cpu()  # the one copy out: speech and, in the last column, text tokens
            t2 = time.perf_counter()
            stages = {"input": t0 - start, "vision": t1 - t0, **stages}
            if replay is not None:
                stages["model"] = t2 - t1  # a replayed graph is timed whole
            else:
                stages["decode"] += t2 - t1 - sum(stages[k] for k in ("encode", "lm", "decode"))  # and the copy
            share = 1 / len(sessions)
            speech, tokens = packed[:, :-1].numpy(), packed[:, -1].long().tolist()
            for row, s in occupied:
                caption = self.tokenizer.piece(tokens[row]) if self.lm is not None and self.tokenizer else ""
                s.deliver(speech[row].copy(), caption)
                for stage, seconds in stages.items():
                    s.timings.add(stage, seconds * share)
            self.last_step = (t2 - start, stages)
            if self.on_step is not None:
                late, dropped, skipped = (b - a for a, b in zip(before, self._counts(sessions)))
                self.on_step(StepReport(t2 - start, stages, len(sessions), late, dropped, skipped))

    @staticmethod
    def _counts(sessions: list[Session]) -> tuple[int, int, int]:
        return (sum(s.timings.late_frames for s in sessions), sum(s.timings.dropped_output for s in sessions),
                sum(s.timings.skipped_input for s in sessions))

    def _update_vision(self, occupied: list[tuple[int, Session]], state: dict) -> None:
        """Encode camera frames more often while the user speaks (every SPEAKING_EVERY steps) than in
        silence (every SILENT_EVERY), and less often still if the encoder cannot keep up; the frames due this
        step, of all sessions, are encoded in one call."""
        if self._encoders is None or self.lm is None:
            return
        due: dict[int, Session] = {}
        for row, session in occupied:
            step = session.timings.steps
            if not session.last_quiet:  # this step's input frame
                session.voice_until = step + VOICE_HANGOVER
            every = SPEAKING_EVERY if step < session.voice_until else SILENT_EVERY
            every *= max(1, math.ceil(session.vision_seconds / self.frame_seconds))  # never outrun the encoder
            if step - session.vision_step >= every and session.video is not None:
                due[row] = session
        if not due:
            return
        results = self._encoders.update({row: session.take_video() for row, session in due.items()})
        grid = self.vision.cfg.grid // self.preset.vision_pool
        for row, result in results.items():
            session = due[row]
            if isinstance(result, FrameError):
                log.warning("session %d: camera frame refused: %s", session.id, result)
                continue
            session.vision_step, session.vision_seconds = session.timings.steps, result.seconds
            session.vision_changes = (grid, result.changed.tolist(), result.recomputed)
            self.lm.update_vision(state["lm"], row, result.tokens, changed=result.changed)
            self._seeing.add(row)

    # -- the clock -------------------------------------------------------------------------------
    def _phase_shift(self) -> float:
        """How far to move the next tick so that steps come just after sessions' input frames complete:
        a tick at a random phase would hold each frame for half a frame period on average."""
        period = self.frame_seconds
        errors = []
        for s in list(self.sessions):
            if s.last_ready is not None and self._started - s.last_ready < 4 * period:
                since = (self._started - s.last_ready) % period  # how long after a frame completed we ticked
                errors.append(wrapped_phase(since - PHASE_GUARD, period))
        if not errors:
            return 0.0
        return max(-period / 4, min(period / 4, -PHASE_GAIN * statistics.median(errors)))

    def _all_in(self) -> bool:
        """Whether every session that is sending has just its next frame waiting, completed since the last
        step began: nothing left to wait for. One with more waiting is behind or sending ahead (it gets no
        early steps: the clock must not race); one silent for a while is stepped at the deadline as ever."""
        period, now, sending = self.frame_seconds, time.monotonic(), 0
        for s in list(self.sessions):
            if s.last_ready is None or now - s.last_ready > 4 * period:
                continue
            waiting, fresh = s.waiting(self._started)
            if waiting != 1 or not fresh:
                return False
            sending += 1
        return sending > 0

    def _frame_completed(self) -> None:
        """Called by sessions (from any thread) when an input frame completes: wake the clock if all are in."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and self._all_in():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the clock stopped and its loop closed meanwhile
                pass

    async def _until(self, deadline: float, earliest: float, stop: asyncio.Event) -> bool:
        """Wait for the deadline, or from `earliest` on for every session's frame; True when woken early."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            now = loop.time()
            if now >= deadline:
                return False
            self._wake.clear()
            if now >= earliest and self._all_in():
                return True
            try:
                until = deadline if now >= earliest else min(earliest, deadline)
                await asyncio.wait_for(self._wake.wait(), timeout=until - now)
            except asyncio.TimeoutError:
                pass
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Step every frame period until `stop` is set; the step runs in a worker thread so that the
        event loop (transports) stays responsive. A step comes as soon as every session's frame is in, or at
        the phase-locked deadline for late ones; a step that overruns is followed at once by the next."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self._loop, self._wake = loop, wake
        stopper = loop.create_task(stop.wait())
        stopper.add_done_callback(lambda _: wake.set())
        next_at, early = loop.time(), False
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tutti-engine") as worker:
                while not stop.is_set():
                    await loop.run_in_executor(worker, self.step)
                    period = self.frame_seconds
                    if early:  # the step began as the last frame completed: the next deadline is a guard after
                        next_at = self._started + period + PHASE_GUARD
                    else:
                        next_at += period + self._phase_shift()
                    if next_at < loop.time() - period:  # far behind: do not try to catch up in a burst
                        next_at = loop.time()
                    early = await self._until(next_at, self._started + EARLIEST * period, stop)
        finally:
            stopper.cancel()
            self._loop = self._wake = None


def _state_bytes(state: dict) -> int:
    return sum(t.numel() * t.element_size() for t in leaves(state))


def _check_fits(per_session: int, sessions: int, device: torch.device) -> None:
    """Refuse, before allocating, state for more sessions than the device's free memory holds."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = _available_ram()
    log.info("state per session %.1f MB; %d sessions need %.2f GB of %.1f GB free on %s", per_session / 2**20,
             sessions, per_session * sessions / 2**30, free / 2**30, device)
    if per_session * sessions > free:
        raise EngineError(f"{sessions} sessions need {per_session * sessions / 2**30:.2f} GB of state "
                          f"({per_session / 2**20:.1f} MB each) but {device} has {free / 2**30:.2f} GB free: "
                          f"lower --max-sessions to {max(0, free // per_session)} or less")


def _available_ram() -> int:
    """Bytes of memory the system can still give (Linux's MemAvailable; unlimited where it cannot say)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**63
