"""Server bugs the fuzzers found that are not fixed yet, and how to recognise them.

The live offer test skips an example whose only trouble is a known bug (KnownBug), so that `make test` stays
green and keeps looking for new bugs. A regression case in regressions/ may carry `known_bug` (a key below): it
is replayed as xfail(strict=True, raises=KnownBug), which fails (XPASS) the day the bug is fixed: then delete
its entry here and the case's `known_bug` field, and it stays as a regression that must pass.

The bugs found earlier and fixed since (JSON nested past the recursion limit, infinite numbers in /ws messages,
aiortc's exceptions out of POST /offer, unreadable candidate ports, chunked offers over the limit, odd hello
rates, malformed ?seed=) are inputs the strategies generate again, with their fixed answers checked; their
cases in regressions/ say "fixed".
"""
from __future__ import annotations

KNOWN_BUGS: dict[str, str] = {
    "aiortc-task": "aiortc's RTCPeerConnection.__connect task dies and nobody retrieves its exception ('Task "
                   "exception was never retrieved' in the server's log): on an offer aiortc takes but cannot "
                   "connect (the first a=fingerprint line misspelt, or no a=group:BUNDLE line), answered 200, "
                   "with AssertionError at rtcdtlstransport.py:506, and the peer waits out the connect deadline; "
                   "and on an offer refused as bad_sdp whose a=group:BUNDLE names first a mid no section has "
                   "(regressions/offer-aiortc-bundle.json), with AttributeError at rtcpeerconnection.py:1079 "
                   "after pc.close() itself failed",
}


class KnownBug(Exception):
    """A check ran into one of KNOWN_BUGS (the key is its message): the fuzz tests skip such an example."""


AIORTC_TASK = "(in RTCPeerConnection."


def known_server_errors(errors: list[str]) -> str | None:
    """The known bug behind what the live server logged (LiveServer.errors lines), when all of it is one:
    exceptions raised in aiortc's code, out of one of aiortc's own tasks ("aiortc-task")."""
    from .live import IN_AIORTC

    if errors and all(line.endswith(IN_AIORTC) and AIORTC_TASK in line for line in errors):
        return "aiortc-task"
    return None
