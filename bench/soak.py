"""Soak: N WebSocket sessions talking in real time for a long while (30 minutes by default), to show that
memory and step times do not grow with time, and what the CPU holds. A server runs for days; a slope of a
few MB an hour or a step that slowly lengthens only shows over such a run.

The server (`serving`, loopback) runs in this process; the clients in a child process (so that this process's
memory is the server's alone, and the clients' work does not run on the server's event loop). Each client
sends a spoken question (a held-out voice where espeak-ng is installed, else assets/sample.wav) followed by
2 s of quiet, looped, in 20 ms pieces paced by its own clock, each client starting at another point of the
loop; and reads everything the server sends. After a warm-up, every engine step is recorded (its time,
late input frames, dropped output frames, skipped input frames) and the process's RSS is sampled every 10 s.

Printed, and appended to `--out` as one JSON line: sessions, minutes, RSS at start and end and its slope
(MB/hour, least squares over the samples), step p50/p99/max, overruns (steps longer than the 80 ms frame),
steps taken against the frames elapsed, late, dropped and skipped frames, speech frames the clients received
against those expected.

    .venv/bin/python bench/soak.py --model echo --sessions 32 [--minutes 30] [--out out/soak.jsonl]
    .venv/bin/python bench/soak.py --model tiny --find     # the largest N in real time, then the soak at it
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PIECE_SECONDS = 0.02
QUIET_SECONDS = 2.0  # between two askings of the question
SAMPLE_SECONDS = 10.0  # between RSS samples
TRIAL_WARMUP = 10.0  # seconds before a --find trial records


# -- the clients (a child process: numpy and websockets only) ------------------------------------------
async def client(url: str, pcm: np.ndarray, rate: int, offset: int, seconds: float, counts: dict[str, int]) -> None:
    """One session: `pcm` (int16) looped from `offset`, paced in real time for `seconds`; counts what comes back."""
    import websockets

    piece = round(rate * PIECE_SECONDS)
    async with websockets.connect(url, max_size=2**23) as ws:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        await ws.send(json.dumps({"type": "hello", "sample_rate": rate}))

        async def read() -> None:
            async for message in ws:
                if isinstance(message, bytes):
                    counts["frames"] += 1
                else:
                    kind = json.loads(message)["type"]
                    counts[kind] = counts.get(kind, 0) + 1

        reader = asyncio.create_task(read())
        start, sent, position = time.monotonic(), 0, offset
        while sent * PIECE_SECONDS < seconds:
            data = np.take(pcm, np.arange(position, position + piece), mode="wrap")
            await ws.send(data.astype("<i2").tobytes())
            position, sent = (position + piece) % len(pcm), sent + 1
            await asyncio.sleep(max(0.0, start + sent * PIECE_SECONDS - time.monotonic()))
        await ws.send(json.dumps({"type": "bye"}))
        await asyncio.wait_for(reader, 10)


async def clients(url: str, audio: Path, sessions: int, seconds: float) -> dict[str, int]:
    """`sessions` clients side by side, their starts spread over the loop; their counts summed."""
    loaded = np.load(audio)
    pcm, rate = loaded["pcm"], int(loaded["rate"])
    counts = [{"frames": 0} for _ in range(sessions)]
    await asyncio.gather(*(client(url, pcm, rate, k * len(pcm) // sessions, seconds, counts[k])
                           for k in range(sessions)))
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


# -- the server (this process) -------------------------------------------------------------------------
def question_audio(path: Path) -> str:
    """The clients' microphone, written to `path` (int16 and its rate, with the quiet after it); says what it is."""
    from core.audio import load_audio, to_pcm16

    if shutil.which("espeak-ng"):
        from tests.support.evaluate import held_out_cases

        case = held_out_cases(8)[7]  # "how many things can you see", a held-out voice (as tests/e2e)
        audio, rate, what = case.audio, case.rate, f"held-out question {case.turn.question!r} ({case.voice})"
    else:
        rate = 16_000
        audio = load_audio(ROOT / "assets" / "sample.wav", rate)[0].numpy()
        what = "assets/sample.wav (espeak-ng is not installed)"
    looped = np.concatenate([np.asarray(audio, np.float32), np.zeros(int(QUIET_SECONDS * rate), np.float32)])
    np.savez(path, pcm=to_pcm16(looped), rate=rate)
    return f"{what}, {len(looped) / rate:.1f} s loop"


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Record:
    steps: list[float] = field(default_factory=list)  # seconds of each step after the warm-up
    late: int = 0
    dropped: int = 0
    skipped: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since the warm-up, RSS bytes)
    recording: bool = False

    def observe(self, report) -> None:
        if self.recording:
            self.steps.append(report.seconds)
            self.late, self.dropped, self.skipped = (self.late + report.late, self.dropped + report.dropped,
                                                     self.skipped + report.skipped)


def slope_mb_per_hour(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 2:
        return float("nan")
    t = np.array([s for s, _ in samples]) / 3600
    m = np.array([b for _, b in samples]) / 2**20
    return float(np.polyfit(t, m, 1)[0])


async def soak(model: str, sessions: int, seconds: float, warmup: float, device: str | None, dtype: str | None,
               audio: Path, quiet: bool = False) -> dict:
    """One run: the server with `sessions` clients for `warmup` + `seconds`; the figures as a dict."""
    from assistant.loader import Placement, build_engine
    from tests.support.loopback import serving

    engine = build_engine(model, sessions, Placement.of(device, dtype))
    frame = engine.frame_seconds
    record = Record()
    async with serving(engine) as (url, _):
        metrics = engine.on_step  # the server's /metrics observer, kept
        engine.on_step = lambda report: (metrics(report), record.observe(report))
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--clients", url.replace("http://", "ws://") + "/ws", "--sessions",
            str(sessions), "--seconds", str(warmup + seconds), "--audio", str(audio), stdout=asyncio.subprocess.PIPE)
        await asyncio.sleep(warmup)
        record.recording, start = True, time.monotonic()
        last_print = start
        while (now := time.monotonic()) - start < seconds:
            record.samples.append((now - start, rss()))
            if not quiet and now - last_print >= 60:
                last_print = now
                recent = np.array(record.steps[-int(60 / frame):]) * 1000
                print(f"  {(now - start) / 60:5.1f} min: RSS {rss() / 2**20:.0f} MB, last minute's step p50 "
                      f"{np.percentile(recent, 50):.1f} / p99 {np.percentile(recent, 99):.1f} ms, "
                      f"overruns {int((np.array(record.steps) > frame).sum())}", flush=True)
            await asyncio.sleep(min(SAMPLE_SECONDS, max(0.01, start + seconds - now)))
        record.samples.append((time.monotonic() - start, rss()))
        record.recording = False
        elapsed = time.monotonic() - start
        out, _ = await child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"the clients failed (exit {child.returncode})")
        received = json.loads(out.decode().strip().splitlines()[-1])
    steps = np.array(record.steps) * 1000
    return {
        "model": model, "sessions": sessions, "minutes": round(seconds / 60, 2), "warmup_s": warmup,
        "rss_start_mb": round(record.samples[0][1] / 2**20, 1), "rss_end_mb": round(record.samples[-1][1] / 2**20, 1),
        "rss_slope_mb_per_hour": round(slope_mb_per_hour(record.samples), 2), "rss_samples": len(record.samples),
        "step_p50_ms": round(float(np.percentile(steps, 50)), 2) if len(steps) else None,
        "step_p99_ms": round(float(np.percentile(steps, 99)), 2) if len(steps) else None,
        "step_max_ms": round(float(steps.max()), 2) if len(steps) else None,
        "frame_ms": round(frame * 1000, 1), "overruns": int((steps > frame * 1000).sum()),
        "steps": len(steps), "frames_elapsed": int(elapsed / frame),
        "late_frames": record.late, "dropped_output": record.dropped, "skipped_input": record.skipped,
        "client_frames_received": received.get("frames", 0),
        "client_frames_expected": int(sessions * (warmup + seconds) / frame),
        "client_errors": received.get("error", 0),
    }


def holds(figures: dict) -> bool:
    """Real time: the step's p99 under the frame and no step over it."""
    return figures["step_p99_ms"] is not None and figures["step_p99_ms"] < figures["frame_ms"] \
        and figures["overruns"] == 0


async def find(args: argparse.Namespace, audio: Path) -> int:
    """The largest N that holds real time in a `--trial`-second run: doubling, then bisecting."""
    results: dict[int, bool] = {}

    async def trial(n: int) -> bool:
        figures = await soak(args.model, n, args.trial, TRIAL_WARMUP, args.device, args.dtype, audio, quiet=True)
        results[n] = holds(figures)
        print(f"  {n:3d} sessions: step p50 {figures['step_p50_ms']} / p99 {figures['step_p99_ms']} ms, "
              f"overruns {figures['overruns']}, late {figures['late_frames']}: "
              f"{'holds' if results[n] else 'does not hold'}", flush=True)
        return results[n]

    n = 1
    while n <= args.max and await trial(n):
        n *= 2
    good, bad = n // 2, n  # good holds (0: not even one), bad does not (or is over --max)
    if bad > args.max:
        return good
    while bad - good > max(1, good // 8):  # within an eighth
        mid = (good + bad) // 2
        good, bad = (mid, bad) if await trial(mid) else (good, mid)
    return good


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="echo", choices=["echo", "tiny"])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=30.0, help="of the soak, after the warm-up (0: none)")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before anything is recorded")
    parser.add_argument("--find", action="store_true",
                        help="first find the largest session count in real time (step p99 under the frame, no "
                             "overruns, in --trial s), then soak at it")
    parser.add_argument("--trial", type=float, default=60.0, help="seconds of each --find trial")
    parser.add_argument("--max", type=int, default=128, help="the most sessions --find tries")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="append the figures here as a JSON line")
    parser.add_argument("--clients", help=argparse.SUPPRESS)  # the child process: its server's /ws URL
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--audio", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        print(json.dumps(asyncio.run(clients(args.clients, args.audio, args.sessions, args.seconds))))
        return
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "question.npz"
        print(f"microphone: {question_audio(audio)}; torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} CPUs", flush=True)
        sessions = args.sessions
        if args.find:
            print(f"finding the largest session count in real time ({args.model}, {args.trial:.0f} s trials):")
            sessions = asyncio.run(find(args, audio))
            print(f"largest in real time: {sessions} sessions")
            if sessions == 0 or args.minutes <= 0:
                return
        print(f"soak: {args.model}, {sessions} sessions, {args.minutes:g} minutes after {args.warmup:g} s of "
              "warm-up", flush=True)
        figures = asyncio.run(soak(args.model, sessions, args.minutes * 60, args.warmup, args.device, args.dtype,
                                   audio))
    figures.update(date=datetime.date.today().isoformat(), machine=platform.node(), cpus=os.cpu_count(),
                   threads=torch.get_num_threads(), found=args.find)
    print(f"sessions {figures['sessions']}, {figures['minutes']:g} min: RSS {figures['rss_start_mb']:.0f} -> "
          f"{figures['rss_end_mb']:.0f} MB, slope {figures['rss_slope_mb_per_hour']:+.1f} MB/hour "
          f"({figures['rss_samples']} samples); step p50 {figures['step_p50_ms']} / p99 {figures['step_p99_ms']} / "
          f"max {figures['step_max_ms']} ms (frame {figures['frame_ms']:g}); overruns {figures['overruns']}; "
          f"steps {figures['steps']} of {figures['frames_elapsed']} frames; late {figures['late_frames']}, "
          f"dropped {figures['dropped_output']}, skipped {figures['skipped_input']}; clients received "
          f"{figures['client_frames_received']} of {figures['client_frames_expected']} frames, "
          f"{figures['client_errors']} errors")
    print(json.dumps(figures))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
