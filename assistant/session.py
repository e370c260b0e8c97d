"""One user's session: audio in (any rate, any chunking) cut into codec frames, latest camera
frame, and the output queue of speech and captions, with per-stage timings.

Transports call `push_audio` / `push_video` and read `pop_output` (from their own threads: audio device
callbacks, the event loop); the engine calls `next_frame` and `deliver` once per step from its worker
thread. A lock guards the buffers; nothing here waits on a model.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from core.audio import StreamingResampler, dither
from core.errors import CodecInputError

_ids = itertools.count(1)
VOICE_RMS = 0.01  # input level (about -40 dBFS) taken as the user speaking
CATCH_UP_STEPS = 12  # steps (about 1 s) an input backlog must last before quiet frames are skipped to shed it


def quiet(frame: torch.Tensor) -> bool:
    return not bool(frame.pow(2).mean().sqrt() > VOICE_RMS)


@dataclass
class Output:
    """One frame of the assistant's speech (at the codec's rate) and the caption text it added."""
    audio: np.ndarray  # float32 [frame_size]
    text: str
    step: int
    ready_at: float | None = None  # time.monotonic() when the input frame it answers was complete (None: late)
    delivered_at: float = field(default_factory=time.monotonic)  # when the engine handed it over


@dataclass
class Timings:
    """Seconds spent per stage on this session's behalf, summed (batched stages: the step's share)."""
    steps: int = 0
    late_frames: int = 0  # steps with no input ready: stepped with silence
    dropped_output: int = 0  # frames dropped because nobody read them
    skipped_input: int = 0  # quiet input frames skipped to shed a lasting backlog (latency)
    stages: dict[str, float] = field(default_factory=dict)
    # seconds from an input frame being complete to its output's first sample leaving the transport:
    # all that our plumbing adds to the codec's own frame and delay (recent frames, kept by transports)
    plumbing: deque[float] = field(default_factory=lambda: deque(maxlen=1000))

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds


class Session:
    def __init__(self, frame_size: int, sample_rate: int, seed: int = 0, max_buffer_s: float = 2.0,
                 max_output_frames: int = 64) -> None:
        self.id = next(_ids)
        self.seed = seed
        self.frame_size, self.sample_rate = frame_size, sample_rate
        self._resamplers: dict[int, StreamingResampler] = {}
        self._pending = torch.zeros(0)
        self._ready: deque[float] = deque()  # when each whole frame in _pending was complete
        self._frame_ready: float | None = None
        self.last_ready: float | None = None  # when the newest whole input frame was complete (the clock aligns to it)
        self.on_frame: Callable[[], None] | None = None  # told (outside the lock) when an input frame completes
        self._backlogged = 0  # consecutive steps that found more than one whole frame waiting
        self.last_quiet = True  # whether the frame last stepped was quiet (camera sampling; skips need quiet)
        self._max_pending = int(max_buffer_s * sample_rate)
        self.video: np.ndarray | None = None  # latest camera frame, replaced by each new one
        self.outputs: deque[Output] = deque(maxlen=max_output_frames)
        self.timings = Timings()
        self.closed = False
        self._lock = threading.Lock()
        self._noise = np.random.default_rng([seed, 11])  # the noise floor stepped when input is late
        # camera sampling, kept by the engine: last step encoded, its cost, the speaking window, and the
        # last frame's changed tokens (grid side, indices, recomputed fraction) for the page's overlay
        self.vision_step = -(10**9)
        self.vision_seconds = 0.0
        self.voice_until = 0
        self.vision_changes: tuple[int, list[int], float] | None = None

    # -- transport side --------------------------------------------------------------------------
    def push_audio(self, samples: np.ndarray, rate: int) -> None:
        """Mono or interleaved-channel samples (int16 or float) at any rate; channels are averaged."""
        data = np.asarray(samples)
        if data.dtype == np.int16:
            data = data.astype(np.float32) / 32768
        elif data.dtype not in (np.float32, np.float64):
            raise CodecInputError(f"audio samples must be int16 or float, got {data.dtype}")
        if data.ndim == 2:
            data = data.mean(axis=1)
        elif data.ndim != 1:
            raise CodecInputError(f"audio must be [samples] or [samples, channels], got shape {data.shape}")
        if not np.isfinite(data).all():
            raise CodecInputError("audio holds NaN or infinite samples")
        if rate not in self._resamplers:
            self._resamplers[rate] = StreamingResampler(rate, self.sample_rate)
        with self._lock:
            chunk = self._resamplers[rate](torch.from_numpy(data.astype(np.float32)))
            self._pending = torch.cat([self._pending, chunk])
            excess = self._pending.shape[0] - self._max_pending
            if excess > 0:  # the engine fell behind or the client floods: keep the newest audio
                self._pending = self._pending[excess:]
            whole = self._pending.shape[0] // self.frame_size
            while len(self._ready) > whole:
                self._ready.popleft()
            now = time.monotonic()
            completed = len(self._ready) < whole
            while len(self._ready) < whole:
                self._ready.append(now)
                self.last_ready = now
        if completed and self.on_frame is not None:
            self.on_frame()

    def push_video(self, frame: np.ndarray) -> None:
        self.video = frame

    def pop_output(self) -> Output | None:
        with self._lock:
            return self.outputs.popleft() if self.outputs else None

    # -- engine side -----------------------------------------------------------------------------
    def waiting(self, since: float) -> tuple[int, bool]:
        """Whole input frames waiting, and whether the newest completed after `since` (the clock asks)."""
        with self._lock:
            return len(self._ready), bool(self._ready) and self._ready[-1] > since

    def next_frame(self) -> torch.Tensor:
        """The next whole frame of input, or quiet when none is ready (the session is late): a -60 dBFS noise
        floor, as from a microphone in a quiet room, which is what the models learnt quiet as; digital
        silence gives the codec codes it never saw in training."""
        with self._lock:
            if self._pending.shape[0] < self.frame_size:
                self.timings.late_frames += 1
                self._frame_ready, self._backlogged, self.last_quiet = None, 0, True
                return dither(torch.zeros(self.frame_size), self._noise)
            n = self.frame_size
            self._backlogged = self._backlogged + 1 if self._pending.shape[0] >= 2 * n else 0
            if self._backlogged >= CATCH_UP_STEPS and self.last_quiet and quiet(self._pending[: n]) \
                    and quiet(self._pending[n: 2 * n]):
                # Input has run a frame (or more) behind for a second, e.g. since a late packet: every answer
                # comes that much later. Skipping a frame amid quiet sheds it without losing the user's words.
                self._pending = self._pending[n:]
                self._ready.popleft()
                self._backlogged = 0
                self.timings.skipped_input += 1
            frame, self._pending = self._pending[:n], self._pending[n:]
            self._frame_ready = self._ready.popleft()
            self.last_quiet = quiet(frame)
            return frame

    def take_video(self) -> np.ndarray | None:
        frame, self.video = self.video, None
        return frame

    def deliver(self, audio: np.ndarray, text: str) -> None:
        with self._lock:
            if len(self.outputs) == self.outputs.maxlen:
                self.timings.dropped_output += 1
            self.outputs.append(Output(audio, text, self.timings.steps, self._frame_ready))
            self.timings.steps += 1
