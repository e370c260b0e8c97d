"""End-to-end latency: server-side plumbing per stage, and mouth-to-ear in headless Chromium over loopback.

Echo mode (the bundled codec: the user's codes are decoded back) and, with --model tiny, the whole
bundled model. The fake microphone plays silence, then a click train; the page finds the first onset in its
microphone and in what comes back, on its own audio clock. Server-side figures come from the engine's
per-stage timings. Also: how many concurrent sessions this CPU steps within a frame.

    .venv/bin/python bench/e2e.py [--model echo|tiny] [--sessions 1 4 8 16 32]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.loader import build_engine  # noqa: E402
from core.audio import save_audio  # noqa: E402
from tests.support.loopback import serving, started_page  # noqa: E402


def click_wav(path: Path, rate: int = 48_000) -> Path:
    audio = np.zeros(int(6 * rate))
    start = int(2.5 * rate)
    audio[start:start + int(0.3 * rate)] = 0.8 * np.sign(np.sin(2 * np.pi * 500 * np.arange(int(0.3 * rate)) / rate))
    save_audio(path, torch.from_numpy(audio)[None], rate)
    return path


async def mouth_to_ear(url: str, wav: Path, threshold: float) -> float | None:
    async with started_page(url, wav) as page:
        await page.evaluate(f"window.tutti.measureOnsets(0.3, {threshold})")
        await asyncio.sleep(5)
        onsets = await page.evaluate("window.tutti.onsets")
    print(f"  page-clock onsets: microphone {onsets['mic']}, returned audio {onsets['remote']} "
          f"(its idle level {onsets['remoteFloor']:.3f})")
    if onsets["mic"] is None or onsets["remote"] is None or onsets["remote"] < onsets["mic"]:
        return None
    return 1000 * (onsets["remote"] - onsets["mic"])


async def run(model: str, threshold: float) -> None:
    engine = build_engine(model, 8)
    steps: list[tuple[float, dict]] = []
    plumbing: list[float] = []
    async with serving(engine) as (url, _):
        engine.on_step = lambda r: (steps.append((r.seconds, r.stages)),  # in place of the server's metrics
                                    plumbing.extend(p for s in engine.sessions for p in s.timings.plumbing),
                                    [s.timings.plumbing.clear() for s in engine.sessions])
        with tempfile.TemporaryDirectory() as tmp:
            latency = await mouth_to_ear(url, click_wav(Path(tmp) / "click.wav"), threshold)
    frame_ms = 1000 * engine.frame_seconds
    print(f"model {model}: mouth-to-ear in Chromium (loopback): "
          f"{'not detected' if latency is None else f'{latency:.0f} ms'}; codec frame {frame_ms:.0f} ms")
    if steps:
        for stage in ("input", "vision", "encode", "lm", "decode"):
            values = [1000 * s[stage] for _, s in steps]
            print(f"  server {stage:>6}: median {statistics.median(values):6.2f} ms, p90 {np.percentile(values, 90):6.2f} ms")
        total = [1000 * s for s, _ in steps]
        print(f"  server step : median {statistics.median(total):6.2f} ms, p90 {np.percentile(total, 90):6.2f} ms")
    if plumbing:
        ms = [1000 * p for p in plumbing]
        step = statistics.median(1000 * s for s, _ in steps) if steps else 0.0
        print(f"  plumbing (input frame complete -> its output's first sample handed to WebRTC): median "
              f"{statistics.median(ms):6.2f} ms, p90 {np.percentile(ms, 90):6.2f} ms over {len(ms)} frames; "
              f"less the step's own compute: {statistics.median(ms) - step:6.2f} ms")


def capacity(model: str, sessions: list[int]) -> None:
    engine = build_engine(model, max(sessions))
    frame = 1000 * engine.frame_seconds
    print(f"model {model}: one batched step against live sessions (input silence), frame {frame:.0f} ms")
    for n in sessions:
        while len(engine.sessions) < n:
            engine.add_session()
        for _ in range(3):
            engine.step()
        times = []
        for _ in range(10):
            start = time.perf_counter()
            engine.step()
            times.append(1000 * (time.perf_counter() - start))
        med = statistics.median(times)
        print(f"  {n:>3} sessions: {med:7.1f} ms/step {'(real time)' if med < frame else '(too slow)'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="echo", choices=["echo", "tiny"])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--threshold", type=float, default=0.01,
                        help="onset threshold of the returned audio (full scale 1.0; the microphone's is 0.3)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    asyncio.run(run(args.model, args.threshold))
    capacity(args.model, args.sessions)


if __name__ == "__main__":
    main()
