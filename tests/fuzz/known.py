"""Server bugs the fuzzers found that are not fixed yet, and how to recognise their inputs.

The strategies leave these inputs out (and the live offer test skips an example whose only trouble is a known
aiortc one), so that `make test` stays green and keeps looking for new bugs. Most bugs have a regression case in
regressions/ marked xfail(strict=True) with the reason below, which fails (XPASS) the day the bug is fixed: then
delete its entry here and the `known_bug` field of its case. "odd-rate", "seed-code" and "aiortc-task" have
none (a repro would allocate gigabytes, needs the fix's code name, or is timing-dependent): their text says how
to reproduce them.
"""
from __future__ import annotations

import json
import math
from typing import Any

MAX_OFFER = 64 * 1024  # docs/reliability.md: an offer's size limit

KNOWN_BUGS: dict[str, str] = {
    "deep-json": "JSON nested deeper than Python's recursion limit raises RecursionError (not a ValueError) in "
                 "json.loads: parse_offer lets it out (500, text/plain) and messages.parse too (the /ws handler "
                 "dies and the connection drops without an error message)",
    "inf-int": "a /ws hello with sample_rate 1e999 (JSON Infinity), or an image with such a width or height: "
               "int(inf) raises OverflowError, which parse_rate/parse_image do not catch, so the handler dies "
               "and the connection drops",
    "aiortc-errors": "aiortc's SDP parser and setRemoteDescription/createAnswer raise more than UNUSABLE_OFFER on "
                     "a broken offer: KeyError (a=setup:bogus), AssertionError (m=audio x UDP/TLS/RTP/SAVPF), "
                     "IndexError (a=rtpmap:111 opus), AttributeError (a=group:BUNDLE naming first a mid no "
                     "section has; m-lines reordered against the video transceivers answer() adds); POST /offer "
                     "then answers a 500 and the peer and its session stay held until the connect deadline (for "
                     "the BUNDLE one, pc.close() raises AttributeError too)",
    "aiortc-task": "an offer aiortc takes but cannot connect (the first a=fingerprint line misspelt, or no "
                   "a=group:BUNDLE line) is answered 200, then aiortc's RTCPeerConnection.__connect task dies "
                   "with AssertionError at rtcdtlstransport.py:506 ('Task exception was never retrieved' in the "
                   "server's log) and the peer waits out the connect deadline",
    "candidate-port": "parse_offer's candidate filter (PeerAddresses.allows) checks the port with str.isdigit() "
                      "and then int(): a port of over 4300 digits (int's string limit) or a digit int() does not "
                      "read ('²') raises ValueError out of parse_offer, a 500 from POST /offer",
    "odd-rate": "a /ws hello may declare any rate in 8000..192000, but resampling an odd one to the codec's "
                "24 kHz builds a polyphase kernel of about (rate/g)*(24000/g) taps (g their gcd): 8001 Hz makes 82 "
                "MiB in 2 s on the event loop (every session stalls; 16 are cached), 191999 Hz asks for 37 GB and "
                "the handler dies with RuntimeError where there is less (no regression case: on a big machine "
                "it would allocate it)",
    "seed-code": "/ws?seed=abc (or a negative seed, or more than 4300 digits) is answered with code "
                 "'session_limit' and closed 1013 ('try again later'), as if the server were full: a client "
                 "retries a malformed URL for ever",
    "chunked-offer": "POST /offer with Transfer-Encoding: chunked has no Content-Length, so the 64 KiB "
                     "offer_too_large check is skipped: a larger offer is read and parsed, and one over aiohttp's "
                     "1 MiB client_max_size is refused by aiohttp itself with a text/plain 413, not JSON",
}


class KnownBug(Exception):
    """A check ran into one of KNOWN_BUGS (the key is its message): the fuzz tests skip such an example."""


def _nests_too_deep(text: str | bytes) -> bool:
    try:
        json.loads(text)
    except RecursionError:
        return True
    except ValueError:
        return False
    return False


def _infinite(value: Any) -> bool:
    return isinstance(value, float) and math.isinf(value)


def _unreadable_candidate_port(body: bytes) -> bool:
    """Whether an a=candidate line's port field passes str.isdigit() but int() cannot read it."""
    try:
        sdp = json.loads(body)["sdp"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return False
    if not isinstance(sdp, str):
        return False
    for line in sdp.splitlines():
        fields = line.split()
        if line.startswith("a=candidate:") and len(fields) >= 8 and fields[5].isdigit():
            try:
                int(fields[5])
            except ValueError:
                return True
    return False


def known_offer_bug(body: bytes, chunked: bool = False) -> str | None:
    """The known bug that this POST /offer body (sent chunked or not) runs into, if any. (The aiortc ones are
    told by what the server logs: known_server_errors.)"""
    if chunked and len(body) > MAX_OFFER:
        return "chunked-offer"
    if _nests_too_deep(body):
        return "deep-json"
    if _unreadable_candidate_port(body):
        return "candidate-port"
    return None


AIORTC_TASK = "(in RTCPeerConnection."


def known_server_errors(errors: list[str]) -> str | None:
    """The known bug behind what the live server logged (LiveServer.errors lines), when all of it is one:
    exceptions raised in aiortc's code, out of the offer handler ("aiortc-errors") or one of aiortc's tasks
    ("aiortc-task")."""
    from .live import IN_AIORTC

    if not errors or not all(line.endswith(IN_AIORTC) for line in errors):
        return None
    return "aiortc-task" if all(AIORTC_TASK in line for line in errors) else "aiortc-errors"


CODEC_RATE = 24_000  # the fuzz server's codec (the `test` preset), which /ws audio is resampled to


def _costly_rate(value: Any) -> bool:
    """Whether a hello's sample_rate, read as parse_rate reads it (int()), is in range but odd enough that
    resampling it builds a huge kernel."""
    try:
        rate = int(value)
    except (TypeError, ValueError, OverflowError):
        return False
    g = math.gcd(rate, CODEC_RATE)
    return 8000 <= rate <= 192_000 and (rate // g) * (CODEC_RATE // g) > 10**6


def known_ws_seed_bug(query: str) -> str | None:
    """The known bug that a /ws query string runs into, if any."""
    from urllib.parse import parse_qs

    seeds = parse_qs(query.lstrip("?"), keep_blank_values=True).get("seed")
    if not seeds or seeds[-1] == "":
        return None
    try:
        return None if int(seeds[-1]) >= 0 else "seed-code"
    except ValueError:
        return "seed-code"


def known_ws_bug(text: str) -> str | None:
    """The known bug that this /ws text message runs into, if any."""
    if _nests_too_deep(text):
        return "deep-json"
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        kind = data.get("type")
        if kind == "hello" and _infinite(data.get("sample_rate")):
            return "inf-int"
        if kind == "hello" and _costly_rate(data.get("sample_rate")):
            return "odd-rate"
        if kind == "image" and (_infinite(data.get("width")) or _infinite(data.get("height"))):
            return "inf-int"
    return None
