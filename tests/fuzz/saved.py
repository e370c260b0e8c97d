"""Regression cases on disk (regressions/): what bench/fuzz.py writes when a check fails, and what
test_regressions.py replays.

`offer-*.json`: a POST /offer body, one of "body" (text), "body_b64" (bytes), "parts" ([text, times] pairs,
concatenated: huge bodies stay small on disk) or "chromium_replace" ([old, new] pairs applied to the Chromium
offer, sent as {"sdp", "type": "offer"}); "chunked": sent with Transfer-Encoding: chunked; "expect": the
[status, code] the server must answer with (code "" for an answer).
`ws-*.json`: "steps", a list of test_ws_fuzz.Step objects, replayed on one /ws connection.
Either may carry "known_bug" (a key of known.KNOWN_BUGS: replayed as xfail(strict=True, raises=KnownBug)) and
a "note".
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from .strategies import CHROMIUM_OFFER

REGRESSIONS = Path(__file__).resolve().parent / "regressions"


def offer_body(case: dict[str, Any]) -> bytes:
    """The body a saved offer case sends."""
    if "body" in case:
        return case["body"].encode("utf-8", "surrogatepass")
    if "body_b64" in case:
        return base64.b64decode(case["body_b64"])
    if "parts" in case:
        return "".join(text * times for text, times in case["parts"]).encode("utf-8", "surrogatepass")
    sdp = CHROMIUM_OFFER
    for old, new in case["chromium_replace"]:
        assert old in sdp, f"{old!r} is not in the Chromium offer"
        sdp = sdp.replace(old, new, 1)
    return json.dumps({"sdp": sdp, "type": "offer"}).encode()


def dumps(case: dict[str, Any]) -> str:
    """A case as JSON text, one field (and one /ws step) a line."""
    def field(key: str, value: Any) -> str:
        if key == "steps":
            return f'"steps": [\n  ' + ",\n  ".join(json.dumps(s, ensure_ascii=True) for s in value) + "\n ]"
        return f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=True)}"

    return "{\n " + ",\n ".join(field(k, v) for k, v in case.items()) + "\n}\n"


def save(kind: str, case: dict[str, Any], folder: Path = REGRESSIONS) -> Path | None:
    """Write `case` as `<kind>-<sha>.json` (named by its content, so a failure found twice is saved once);
    None when it was saved already."""
    text = dumps(case)
    path = folder / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    if path.exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def offer_case(body: bytes, chunked: bool, note: str) -> dict[str, Any]:
    """A saved form of a failing offer body."""
    try:
        case: dict[str, Any] = {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        case = {"body_b64": base64.b64encode(body).decode()}
    return {**case, "chunked": chunked, "note": note}
