"""Local devices: sounddevice microphone and speaker, an OpenCV camera (device index, file or stream URL).

The microphone callback hands audio on; the speaker callback pulls the assistant's speech (silence
when there is none); a camera thread hands over frames at a few per second. Each runs on its own
thread, so a slow device never stalls the engine's clock. Where the media go is given as callables:
a local session (`tutti desktop`) or a remote server (`tutti client`).
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable

import numpy as np

from ..engine import Engine
from ..session import Session

MIC_RATE = 48_000
CAMERA_FPS = 5.0


class LocalDevices:
    def __init__(self, on_audio: Callable[[np.ndarray, int], None], pull_audio: Callable[[], np.ndarray | None],
                 on_frame: Callable[[np.ndarray], None], speaker_rate: int, mic: int | str | None = None,
                 speaker: int | str | None = None, camera: str | None = None, camera_fps: float = CAMERA_FPS) -> None:
        """on_audio(samples, rate): microphone audio; pull_audio(): the next speech to play (None: nothing);
        on_frame(bgr): a camera frame."""
        import sounddevice as sd

        self.on_audio, self.pull_audio, self.on_frame = on_audio, pull_audio, on_frame
        self.camera_fps = camera_fps
        self.buffer = np.zeros(0, np.float32)
        self.played = 0
        self.camera_frames = 0
        self._stop = threading.Event()
        self._mic = sd.InputStream(device=mic, samplerate=MIC_RATE, channels=1, blocksize=MIC_RATE // 50,
                                   dtype="float32", callback=self._on_mic)
        self._speaker = sd.OutputStream(device=speaker, samplerate=speaker_rate, channels=1,
                                        blocksize=speaker_rate // 50, dtype="float32", callback=self._on_speaker)
        self._camera = None
        if camera:
            import cv2

            capture = cv2.VideoCapture(int(camera) if camera.isdigit() else camera)
            if not capture.isOpened():
                raise ValueError(f"cannot open camera {camera!r} (a device index, a video file or a stream URL)")
            self._camera = threading.Thread(target=self._read_camera, args=(capture, camera), daemon=True)

    def _on_mic(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        self.on_audio(indata[:, 0].copy(), MIC_RATE)

    def _on_speaker(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        while self.buffer.shape[0] < frames and (more := self.pull_audio()) is not None:
            self.buffer = np.concatenate([self.buffer, more])
        take = min(frames, self.buffer.shape[0])
        outdata[:take, 0] = self.buffer[:take]
        outdata[take:, 0] = 0.0  # nothing to say yet: silence
        self.buffer = self.buffer[take:]
        self.played += take

    def _read_camera(self, capture, source: str) -> None:
        import cv2

        is_file = not source.isdigit() and "://" not in source
        native = capture.get(cv2.CAP_PROP_FPS) or 30.0
        last = 0.0
        while not self._stop.is_set() and capture.isOpened():
            ok, frame = capture.read()
            if not ok:
                if is_file:  # a video file as the camera: loop it
                    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                break
            if is_file:
                time.sleep(1 / native)  # play a file at its own pace
            now = time.monotonic()
            if now - last >= 1 / self.camera_fps:
                last = now
                self.on_frame(frame)
                self.camera_frames += 1
        capture.release()

    def __enter__(self) -> LocalDevices:
        self._mic.start()
        self._speaker.start()
        if self._camera is not None:
            self._camera.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._mic.stop(), self._mic.close()
        self._speaker.stop(), self._speaker.close()
        if self._camera is not None:
            self._camera.join(timeout=2)


async def _clock(engine: Engine, seconds: float) -> None:
    stop = asyncio.Event()
    clock = asyncio.create_task(engine.run(stop))
    try:
        await (asyncio.sleep(seconds) if seconds else asyncio.Event().wait())
    finally:
        stop.set()
        await clock


def talk(engine: Engine, mic: int | str | None = None, speaker: int | str | None = None, camera: str | None = None,
         seconds: float = 0, seed: int = 0, on_ready: Callable[[], None] = lambda: None) -> tuple[Session, LocalDevices]:
    """This computer's microphone, speaker and camera as one session of `engine`, its clock running for `seconds`
    (0: until Ctrl-C; `on_ready` is told once the devices are live); returns the session (its timings) and the
    devices (what they played and saw)."""
    with engine.session(seed) as session:
        def speech() -> np.ndarray | None:
            out = session.pop_output()
            return None if out is None else out.audio

        with LocalDevices(session.push_audio, speech, session.push_video, session.sample_rate, mic, speaker,
                          camera) as devices:
            on_ready()
            try:
                asyncio.run(_clock(engine, seconds))
            except KeyboardInterrupt:
                pass
    return session, devices
