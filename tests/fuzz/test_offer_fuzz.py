"""`POST /offer` fuzzed with random JSON and a real Chromium offer mutated line-wise.

Properties (docs/reliability.md): the parser refuses with a typed 4xx or returns an SDP within the offer limits;
the live server answers 200 with an SDP answer or a 4xx/5xx JSON `{"error", "code"}` (never a 500 or a
traceback), a body over 64 KiB with 413 offer_too_large (chunked or not) and an offer aiortc cannot use with
400 bad_sdp, stays healthy, and holds exactly the sessions and peers of the offers it accepted.
"""
from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

from assistant.access import Refused
from assistant.transport.webrtc import MAX_CANDIDATES, MAX_MEDIA, MAX_OFFER, parse_offer

from .known import KnownBug, known_server_errors
from .live import LiveServer
from .strategies import CHROMIUM_OFFER, aiortc_breaking_sdp, offer_bodies

SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# CI budget: deterministic (derandomize), nothing written to a .hypothesis/ database in the checkout.
PARSER_EXAMPLES, PORT_EXAMPLES, LIVE_EXAMPLES, AIORTC_EXAMPLES = 1500, 300, 300, 40
JSON_HEADERS = {"Content-Type": "application/json"}


def check_parsed(body: bytes) -> str:
    """parse_offer refuses `body` with a 4xx and a code, or returns an SDP with audio within the limits; returns
    the refusal's code ("" for an SDP)."""
    try:
        sdp = parse_offer(body)
    except Refused as e:
        assert 400 <= e.status < 500 and e.code and str(e), (e.status, e.code, str(e))
        return e.code
    assert isinstance(sdp, str)
    assert re.search(r"^m=audio ", sdp, re.M)
    assert len(re.findall(r"^m=", sdp, re.M)) <= MAX_MEDIA
    assert len(re.findall(r"^a=candidate", sdp, re.M)) <= MAX_CANDIDATES
    return ""


def check_no_new_errors(server: LiveServer, since: int) -> None:
    """The server logged no traceback since `since` (KnownBug when all it logged is a known aiortc bug)."""
    errors = server.errors[since:]
    if errors and (bug := known_server_errors(errors)) is not None:
        raise KnownBug(bug)
    assert errors == [], errors


def check_live(server: LiveServer, body: bytes, chunked: bool = False,
               expect: tuple[int, str] | None = None) -> tuple[int, str]:
    """POST `body` to the live server and check the answer (it is `expect`, a status and code, where given),
    its health and what it holds; returns the status and the refusal's code ("" for an answer). Every peer an
    accepted offer made is closed before returning. KnownBug when the server ran into a known bug as well."""
    errors_before = len(server.errors)
    try:
        status, content_type, raw = server.request("POST", "/offer", body, JSON_HEADERS, chunked)
        assert status != 500, (raw[:300], server.errors[errors_before:])
        assert content_type.startswith("application/json"), (status, content_type, raw[:300])
        answer = json.loads(raw)
        if status == 200:
            assert answer["type"] == "answer" and isinstance(answer["session"], int)
            assert answer["sdp"].startswith("v=0") and re.search(r"^m=audio ", answer["sdp"], re.M)
        else:
            assert 400 <= status < 600, status
            assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
            assert isinstance(answer.get("code"), str) and answer["code"], answer
        if len(body) > MAX_OFFER:
            assert (status, answer.get("code")) == (413, "offer_too_large"), (status, answer)
        if expect is not None:
            assert (status, answer.get("code", "")) == tuple(expect), (expect, status, answer)
        assert server.healthy()
        accepted = 1 if status == 200 else 0
        assert len(server.peers) == accepted, f"{len(server.peers)} peers held after a {status}"
        assert len(server.engine.sessions) == accepted, f"{len(server.engine.sessions)} sessions after a {status}"
    finally:  # clean up without raising, so that a failure above is the one reported
        server.close_peers()
        left = not server.wait_for_no_sessions()
    assert not left, "sessions were left after their peers closed"
    check_no_new_errors(server, errors_before)
    return status, answer.get("code", "")


def test_the_real_offer_is_accepted_as_it_is(server: LiveServer) -> None:
    """The unmutated browser offer gets an answer: the mutations start from something the server takes."""
    check_parsed(CHROMIUM_OFFER.encode())
    body = json.dumps({"sdp": CHROMIUM_OFFER, "type": "offer"}).encode()
    assert check_live(server, body) == (200, "")
    assert check_live(server, body, chunked=True) == (200, "")


@settings(max_examples=PARSER_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=SLOW_OK)
@given(body=offer_bodies)
def test_parse_offer_refuses_or_returns_a_bounded_sdp(body: bytes) -> None:
    event(f"refused: {check_parsed(body) or 'no'}")


# The first candidate of the Chromium offer that parse_offer keeps (its address is allowed), and the ports
# a candidate may name (PeerAddresses.allows): ASCII digits, 1024..65535.
KEPT = next(line for line in parse_offer(json.dumps({"sdp": CHROMIUM_OFFER, "type": "offer"})).split("\r\n")
            if line.startswith("a=candidate:"))
no_space = st.characters(codec=None, exclude_categories=("Zs", "Zl", "Zp", "Cc", "Cs"))
ports = st.one_of(
    st.integers(-10, 10**6).map(str), st.integers(1, 6000).map(lambda n: "9" * n), st.text(no_space, min_size=1),
    st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=6),
    st.sampled_from(["1023", "1024", "65535", "65536", "01024", "001024", "\u00b2", "4620\u00b2",
                     "\u0664\u0666\u0662", "+2000", "0x400", "1e4", "2000.0"]))


def takes_port(port: str) -> bool:
    return re.fullmatch(r"[0-9]{1,5}", port) is not None and 1024 <= int(port) <= 65535


@settings(max_examples=PORT_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=SLOW_OK)
@given(port=ports)
def test_a_candidate_is_kept_only_with_a_port_it_may_name(port: str) -> None:
    """A port that is not 1024..65535 in ASCII digits (a 5 000-digit one, '\u00b2', which str.isdigit() takes and
    int() does not) drops the candidate; it is never an error."""
    fields = KEPT.split(" ")
    fields[5] = port
    candidate = " ".join(fields)
    sdp = parse_offer(json.dumps({"sdp": CHROMIUM_OFFER.replace(KEPT, candidate, 1), "type": "offer"}))
    assert (candidate in sdp.split("\r\n")) == takes_port(port), (port, takes_port(port))


@settings(max_examples=LIVE_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=SLOW_OK)
@given(body=offer_bodies, chunked=st.booleans())
def test_the_server_answers_every_offer_body_and_stays_clean(server: LiveServer, body: bytes,
                                                             chunked: bool) -> None:
    try:
        status, code = check_live(server, body, chunked)
    except KnownBug as bug:
        event(f"known bug: {bug}")
        reject()
    event(f"{status} {code}")


@settings(max_examples=AIORTC_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=SLOW_OK)
@given(sdp=aiortc_breaking_sdp(), chunked=st.booleans())
def test_an_offer_aiortc_cannot_use_is_refused_as_bad_sdp(server: LiveServer, sdp: str, chunked: bool) -> None:
    """Whatever aiortc raises on such an offer (KeyError, AssertionError, IndexError, AttributeError...), the
    answer is 400 bad_sdp and the peer is gone (check_live checks both before the server's log)."""
    body = json.dumps({"sdp": sdp, "type": "offer"}).encode()
    check_parsed(body)
    try:
        check_live(server, body, chunked, expect=(400, "bad_sdp"))
    except KnownBug as bug:
        event(f"known bug: {bug}")
        reject()
