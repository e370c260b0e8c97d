"""The long fuzz run: the strategies and checks of tests/fuzz (POST /offer bodies against the parser and a live
server, /ws message sequences against a live server) for minutes instead of CI's seconds, random seeds each
round. Every input that fails a check is shrunk by Hypothesis and saved under tests/fuzz/regressions/ (named by
its content), where tests/fuzz/test_regressions.py replays it; an offer that runs into a bug listed in
tests/fuzz/known.py (what the server logs tells) is counted and skipped, as in the tests.

    .venv/bin/python bench/fuzz.py [--minutes 10] [--out tests/fuzz/regressions]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, reject, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

from assistant.engine import Engine  # noqa: E402
from tests.conftest import random_codec  # noqa: E402
from tests.fuzz import saved  # noqa: E402
from tests.fuzz.known import KnownBug  # noqa: E402
from tests.fuzz.live import LiveServer  # noqa: E402
from tests.fuzz.strategies import offer_bodies  # noqa: E402
from tests.fuzz.test_offer_fuzz import check_live, check_parsed  # noqa: E402
from tests.fuzz.test_ws_fuzz import Step, WsMachine  # noqa: E402

SHARES = {"offer-parser": 0.15, "offer-live": 0.35, "ws": 0.5}  # of the time given
ROUND = {"offer-parser": 3000, "offer-live": 300, "ws": 25}  # examples per Hypothesis run (each a fresh seed)
WS_STEPS = 60


@dataclass
class Target:
    """One fuzz target's tally: examples run (shrinking's included), known bugs met, failures by kind."""

    name: str
    kind: str  # the saved cases' prefix: "offer" or "ws"
    examples: int = 0
    steps: int = 0  # /ws messages and reconnections, for the ws target
    rounds: int = 0
    known: Counter = field(default_factory=Counter)
    failures: dict[str, Any] = field(default_factory=dict)  # kind of failure -> the latest (smallest) input
    kinds: set[str] = field(default_factory=set)
    saved: list[Path] = field(default_factory=list)

    def failed(self, error: BaseException, case: Any) -> None:
        """Keep `case` as the example of its kind of failure: the error's type, where it was raised and how its
        text begins (a shrinking Hypothesis calls this again with smaller inputs: the last one is kept)."""
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        text = (str(error).strip().splitlines() or [""])[0][:50]
        self.failures[f"{type(error).__name__} at {where}: {text}"] = case

    def save(self, folder: Path) -> None:
        for key, case in self.failures.items():
            self.kinds.add(key)
            if (path := saved.save(self.kind, case, folder)) is not None:
                self.saved.append(path)
                print(f"  saved {path.name}: {key}", flush=True)
        self.failures.clear()


def hypothesis_settings(examples: int, **more: Any) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
                    print_blob=False, **more)


def offer_round(target: Target, server: LiveServer | None, rng: random.Random) -> None:
    """One Hypothesis run of the offer checks: the parser's alone (server None) or the live server's too."""

    @seed(rng.randrange(2**32))
    @hypothesis_settings(ROUND[target.name])
    @given(body=offer_bodies, chunked=st.booleans())
    def run(body: bytes, chunked: bool) -> None:
        chunked = chunked and server is not None
        target.examples += 1
        try:
            check_parsed(body) if server is None else check_live(server, body, chunked)
        except KnownBug as bug:
            target.known[str(bug)] += 1
            reject()
        except BaseException as e:
            target.failed(e, saved.offer_case(body, chunked, f"bench/fuzz.py {target.name}: {e!r}"[:500]))
            raise

    run()


def ws_round(target: Target, server: LiveServer) -> None:
    """One Hypothesis run of the /ws state machine (longer sequences than CI's; Hypothesis draws its seed)."""

    def failed(steps: list[Step], error: BaseException) -> None:
        target.failed(error, {"steps": [s.to_json() for s in steps], "note": f"bench/fuzz.py ws: {error!r}"[:500]})

    machines: list[WsMachine] = []

    def machine() -> WsMachine:
        target.examples += 1
        machines.append(WsMachine(server, failed))
        return machines[-1]

    try:
        run_state_machine_as_test(machine, settings=hypothesis_settings(ROUND["ws"], stateful_step_count=WS_STEPS))
    finally:
        target.steps += sum(len(m.trace) for m in machines)


def run_for(target: Target, seconds: float, one_round: Callable[[], None], folder: Path) -> None:
    """Rounds of `one_round` until `seconds` have passed; what a round found is saved in `folder` after it."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        target.rounds += 1
        try:
            one_round()
        except Exception as e:  # noqa: BLE001 - Hypothesis re-raises what it found; it is tallied already
            print(f"  {target.name} round {target.rounds}: {type(e).__name__}", flush=True)
        finally:
            target.save(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to fuzz, all targets together")
    parser.add_argument("--out", type=Path, default=saved.REGRESSIONS, help="where failing inputs are saved")
    parser.add_argument("--seed", type=int, default=None, help="seed of the rounds' seeds (default: random)")
    args = parser.parse_args()
    master = args.seed if args.seed is not None else random.randrange(2**32)
    rng, seconds = random.Random(master), args.minutes * 60
    targets = {name: Target(name, "ws" if name == "ws" else "offer") for name in SHARES}
    start = time.monotonic()
    print(f"fuzzing for {args.minutes:g} min (seed {master})", flush=True)

    parser_, live, ws = targets.values()
    run_for(parser_, seconds * SHARES[parser_.name], lambda: offer_round(parser_, None, rng), args.out)
    with LiveServer(Engine(random_codec(), max_sessions=2)) as server:
        run_for(live, seconds * SHARES[live.name], lambda: offer_round(live, server, rng), args.out)
    with LiveServer(Engine(random_codec(), max_sessions=2)) as server:  # fresh: no offer's leftovers in its log
        run_for(ws, seconds - (time.monotonic() - start), lambda: ws_round(ws, server), args.out)

    print(f"\n{'target':14} {'rounds':>6} {'examples':>9} {'failures':>8}  known bugs met (inputs skipped)")
    for t in targets.values():
        known = ", ".join(f"{k} {n}" for k, n in t.known.most_common()) or "-"
        print(f"{t.name:14} {t.rounds:>6} {t.examples:>9} {len(t.kinds):>8}  {known}")
        for key in sorted(t.kinds):
            print(f"  failure: {key}")
    new = [p for t in targets.values() for p in t.saved]
    print(f"(ws: {ws.steps} steps in its {ws.examples} sequences)")
    print(f"{sum(t.examples for t in targets.values())} examples in {(time.monotonic() - start) / 60:.1f} min; "
          f"{len(new)} new failing inputs saved" + "".join(f"\n  {p}" for p in new))


if __name__ == "__main__":
    main()
