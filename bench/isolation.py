"""Isolation under attack: step times and the well-behaved sessions' frames, side by side in one run, first
alone, then while tests/support/hostile.py attacks the server from its own process (from 127.0.0.2, under
`tutti serve`'s per-address limits) and holds one abusive session open all along (noise in real time between
malformed messages). That session is a row of the batch like any other, so the first phase runs one more
well-behaved session in its place; steps with exactly that many rows are compared, and steps where the attack's
short-lived sessions added rows are counted apart (their cost is that of any admitted session).

    .venv/bin/python bench/isolation.py [--model echo|tiny] [--sessions 4] [--seconds 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.access import RateLimits  # noqa: E402
from assistant.client import converse  # noqa: E402
from assistant.loader import Placement, build_engine  # noqa: E402
from tests.support.loopback import serving  # noqa: E402

RATE = 48_000
CPUS = sorted(os.sched_getaffinity(0))


def attacker_cpus() -> None:
    """The attacker on a core of its own (where there are two): its CPU is not the server's to share."""
    if len(CPUS) > 1:
        os.sched_setaffinity(0, CPUS[-1:])


async def phase(url: str, engine, sessions: int, seconds: float, attack: bool) -> dict[str, float]:
    steps: list[float] = []
    observe, full, crowded = engine.on_step, sessions + 1, [0]

    def step(report) -> None:
        if report.sessions == full:
            steps.append(report.seconds)
        crowded[0] += report.sessions > full
        observe(report)

    engine.on_step = step
    sessions = sessions if attack else full
    attacker = None
    if attack:
        attacker = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.support.hostile", url, "--seconds",
                                                        str(seconds + 2), "--source", "127.0.0.2", "--hold",
                                                        stdout=asyncio.subprocess.PIPE, preexec_fn=attacker_cpus)
        await asyncio.sleep(1.0)
    t = np.arange(int(seconds * RATE)) / RATE
    voices = [(0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype(np.float32) for i in range(sessions)]
    late = dropped = 0
    sent = len(t) * 25 // (2 * RATE)  # 80 ms frames each well-behaved session sent

    def count(session) -> None:  # each session's own figures, read as it leaves
        nonlocal late, dropped
        late, dropped = late + session.timings.late_frames, dropped + session.timings.dropped_output

    leave = engine.remove_session
    engine.remove_session = lambda session: (count(session), leave(session))
    ws_url = url.replace("http://", "ws://") + "/ws"
    try:
        replies = await asyncio.gather(*(converse(ws_url, v, RATE, listen_after=0.5) for v in voices))
    finally:
        engine.remove_session, engine.on_step = leave, observe
    attacks = json.loads((await attacker.communicate())[0]) if attacker is not None else {}
    frame = engine.frame_seconds
    return {"steps": len(steps), "p50_ms": 1000 * statistics.median(steps),
            "p99_ms": 1000 * float(np.percentile(steps, 99)), "overruns": sum(s > frame for s in steps),
            "late_frames": late, "dropped_frames": dropped, "errors": sum(len(r.errors) for r in replies),
            "short": sum(len(r.audio) * 25 // (2 * r.sample_rate) < sent for r in replies), "crowded": crowded[0],
            "attacks": sum(attacks.values()), "held": attacks.get("held frames", 0)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="echo")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if len(CPUS) > 1:  # the server on the others, in both phases
        os.sched_setaffinity(0, CPUS[:-1])
    engine = build_engine(args.model, args.sessions + 8, Placement.of("cpu", "float32"))
    async with serving(engine, limits=RateLimits()) as (url, _):  # `tutti serve`'s per-address defaults
        alone = await phase(url, engine, args.sessions, args.seconds, attack=False)
        attacked = await phase(url, engine, args.sessions, args.seconds, attack=True)
    print(f"{args.model}, {args.sessions} well-behaved sessions, {args.seconds:.0f} s each phase")
    print(f"{'':>10} {'steps':>6} {'p50 ms':>7} {'p99 ms':>7} {'overruns':>8} {'late':>5} {'dropped':>7} {'errors':>6} "
          f"{'short':>5} {'crowded':>7}")
    for name, r in (("alone", alone), ("attacked", attacked)):
        print(f"{name:>10} {r['steps']:6d} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {r['overruns']:8d} {r['late_frames']:5d} "
              f"{r['dropped_frames']:7d} {r['errors']:6d} {r['short']:5d} {r['crowded']:7d}")
    print("short: well-behaved sessions that got back fewer frames than they sent; crowded: steps with more rows")
    print(f"hostile requests sent from 127.0.0.2 while attacked: {attacked['attacks']}, "
          f"of them frames of the held abusive session: {attacked['held']}")
    print(f"attacked/alone: p50 {attacked['p50_ms'] / alone['p50_ms']:.2f}x, p99 {attacked['p99_ms'] / alone['p99_ms']:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
