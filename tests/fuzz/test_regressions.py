"""Every saved fuzz case in regressions/ replayed with the fuzz tests' own checks; a case of a known, unfixed bug
is xfail(strict=True, raises=KnownBug), so that its fix shows up as an XPASS to clean up (and any other failure
of it still fails)."""
from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest

from .known import KNOWN_BUGS, KnownBug
from .live import LiveServer
from .saved import REGRESSIONS, offer_body
from .test_offer_fuzz import check_live, check_no_new_errors, check_parsed
from .test_ws_fuzz import Step, replay


def _params() -> list[Any]:
    params = []
    for path in sorted(REGRESSIONS.glob("*.json")):
        bug = json.loads(path.read_text()).get("known_bug")
        marks = [pytest.mark.xfail(strict=True, raises=KnownBug, reason=f"{bug}: {KNOWN_BUGS[bug]}")] if bug else []
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def test_there_are_cases_of_both_kinds() -> None:
    names = [p.name for p in REGRESSIONS.glob("*.json")]
    assert any(n.startswith("offer-") for n in names) and any(n.startswith("ws-") for n in names)


@pytest.mark.parametrize("path", _params())
def test_saved_case(server: LiveServer, path: Path) -> None:
    case = json.loads(path.read_text())
    errors_before = len(server.errors)
    try:
        try:
            if path.name.startswith("offer-"):
                body = offer_body(case)
                check_parsed(body)
                check_live(server, body, case.get("chunked", False), case.get("expect"))
            else:
                replay(server, [Step.from_json(step) for step in case["steps"]])
        finally:
            gc.collect()  # a task that died with this case reports it when collected: now, not in the next case
        check_no_new_errors(server, errors_before)  # KnownBug where all it logged is a known bug's
    finally:
        if case.get("known_bug"):
            del server.errors[errors_before:]  # what a known bug logged is not the next case's failure
