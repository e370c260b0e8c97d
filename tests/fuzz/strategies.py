"""Hypothesis strategies for what a network client may send Tutti: random JSON, and a real browser's SDP offer
mutated line by line. Shared by the /offer and /ws fuzz tests and by bench/fuzz.py's longer run."""
from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from assistant.transport.webrtc import MAX_OFFER

CASES = Path(__file__).resolve().parent / "cases"
# Made by Debian's headless Chromium 156 for the page's setup (microphone + camera, a receive-only audio
# transceiver, the "events" data channel), ICE gathering complete; see cases/README.md.
CHROMIUM_OFFER = (CASES / "chromium_offer.sdp").read_bytes().decode()  # CRLF line ends kept

scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@st.composite
def deep_json(draw: st.DrawFn) -> str:
    """Arrays and objects nested up to 5 000 deep (a parser's recursion is a classic crash)."""
    depth = draw(st.integers(1, 5000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"sdp":[', "]}")]))
    return opener * depth + draw(st.sampled_from(["", "1", "null"])) + closer * depth


def dumps(value: Any) -> str:
    """JSON text of any drawn value (NaN and infinities as Python writes them: NaN, Infinity)."""
    return json.dumps(value)


# -- a real offer, mutated line-wise -----------------------------------------------------------------------
SDP_LINES = CHROMIUM_OFFER.split("\r\n")[:-1]  # the offer ends with CRLF
AUDIO_SECTION = SDP_LINES[SDP_LINES.index(next(x for x in SDP_LINES if x.startswith("m=audio"))):
                          SDP_LINES.index(next(x for x in SDP_LINES if x.startswith("m=video")))]
CANDIDATE = next(x for x in SDP_LINES if x.startswith("a=candidate"))
HUGE = ["9" * 40, "18446744073709551616", "-1", "0", "4294967296", "1e999", "NaN", "-0", "0x10"]
hostile_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)  # any code point


@st.composite
def mutated_sdp(draw: st.DrawFn) -> str:
    """The Chromium offer after 0-4 mutations: lines dropped, duplicated, swapped or replaced, a number made huge,
    bytes flipped, the text truncated, m-sections and candidates multiplied, non-ASCII added, line ends changed."""
    lines = list(SDP_LINES)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["drop", "duplicate", "swap", "replace", "huge", "flip", "truncate", "mlines",
                                   "candidates", "unicode", "attribute", "endings"]))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if not lines:
            lines = [draw(hostile_text)]
        elif op == "drop":
            del lines[i]
        elif op == "duplicate":
            lines[i:i] = [lines[i]] * draw(st.integers(1, 40))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "replace":
            lines[i] = draw(hostile_text | st.sampled_from(SDP_LINES))
        elif op == "huge":
            words = lines[i].split(" ")
            k = draw(st.integers(0, len(words) - 1))
            prefix = words[k].split(":")[0] + ":" if ":" in words[k] and k == 0 else ""
            words[k] = prefix + draw(st.sampled_from(HUGE) | st.integers(1, 70_000).map(lambda n: "9" * n))
            lines[i] = " ".join(words)
        elif op == "flip":
            line = lines[i]
            k = draw(st.integers(0, max(0, len(line) - 1)))
            lines[i] = line[:k] + draw(st.characters(codec=None)) + line[k + 1:]
        elif op == "truncate":
            text = "\r\n".join(lines)
            cut = draw(st.integers(0, len(text)))
            lines = text[:cut].split("\r\n")
        elif op == "mlines":
            lines[i:i] = AUDIO_SECTION * draw(st.integers(1, 8))
        elif op == "candidates":
            lines[i:i] = [CANDIDATE] * draw(st.integers(1, 100))
        elif op == "unicode":
            lines[i] = lines[i] + draw(st.text(st.characters(min_codepoint=128, codec=None), min_size=1, max_size=20))
        elif op == "attribute":
            lines[i:i] = ["a=" + draw(hostile_text)]
        elif op == "endings":
            return draw(st.sampled_from(["\n", "\r", "\r\r\n", "", "\x00"])).join(lines)
    return "\r\n".join(lines) + "\r\n"


@st.composite
def offer_body(draw: st.DrawFn, sdp: st.SearchStrategy[str] = mutated_sdp()) -> dict[str, Any]:
    """An {"sdp", "type"} object around a (mutated) SDP: mostly as a browser sends it, sometimes with a wrong or
    missing type, extra keys or the SDP's value replaced by another JSON value."""
    body: dict[str, Any] = {"sdp": draw(sdp), "type": "offer"}
    change = draw(st.sampled_from(["none"] * 6 + ["type", "extra", "no_type", "no_sdp", "sdp_value"]))
    if change == "type":
        body["type"] = draw(json_values)
    elif change == "extra":
        body.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    elif change == "no_type":
        del body["type"]
    elif change == "no_sdp":
        del body["sdp"]
    elif change == "sdp_value":
        body["sdp"] = draw(json_values)
    return body


@st.composite
def corrupted(draw: st.DrawFn, text: str) -> bytes:
    """The bytes of `text` with a few bytes flipped, cut or inserted (invalid UTF-8 and broken JSON)."""
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and data:
            data[k] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[k:]
        else:
            data[k:k] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as \ud800 escapes


@st.composite
def padded_offer(draw: st.DrawFn) -> bytes:
    """An offer body padded (a "pad" key of x's) to a size around the 64 KiB limit or far over it (up to 2 MiB,
    past aiohttp's own 1 MiB limit): what a chunked body, which declares no length, must not get around."""
    body = draw(offer_body())
    size = draw(st.integers(-64, 64).map(lambda k: MAX_OFFER + k) | st.integers(MAX_OFFER, 2**21))
    body["pad"] = ""
    body["pad"] = "x" * max(0, size - len(_encode(body)))
    return _encode(body)


offer_bodies: st.SearchStrategy[bytes] = st.one_of(
    # most bodies should reach the SDP parsers: six branches (distinct objects: one_of drops repeats) of them
    *[offer_body().map(_encode) for _ in range(6)],
    offer_body().map(lambda b: json.dumps(b, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    offer_body().map(_encode).flatmap(lambda b: corrupted(b.decode())),
    json_values.map(lambda v: dumps(v).encode()),
    deep_json().map(str.encode),
    st.binary(max_size=300),
    padded_offer(),
)


# -- offers that pass the server's own checks but break aiortc (answered 400 bad_sdp) ------------------------
DTLS_SETUPS = ("actpass", "active", "passive")  # the a=setup values aiortc reads
MIDS = [line.split(":", 1)[1] for line in SDP_LINES if line.startswith("a=mid:")]
word = st.text(string.ascii_letters, min_size=1, max_size=10)


@st.composite
def aiortc_breaking_sdp(draw: st.DrawFn) -> str:
    """The Chromium offer with one line changed so that aiortc's SDP parser or createAnswer raises: an a=setup
    role it has no name for (KeyError), an m= port or payload type that is no number or out of range
    (AssertionError, ValueError), an a=rtpmap without its clock rate (IndexError, ValueError), or an
    a=group:BUNDLE that names first a mid no section has (AttributeError)."""
    op = draw(st.sampled_from(["setup", "port", "payload", "rtpmap", "bundle"]))
    index = {"setup": "a=setup:", "port": "m=", "payload": "m=audio ", "rtpmap": "a=rtpmap:",
             "bundle": "a=group:BUNDLE "}[op]
    lines = list(SDP_LINES)
    i = draw(st.sampled_from([k for k, line in enumerate(lines) if line.startswith(index)]))
    words = lines[i].split(" ")
    if op == "setup":
        lines[i] = "a=setup:" + draw(word.filter(lambda w: w not in DTLS_SETUPS))
    elif op == "port":
        words[1] = draw(word)
    elif op == "payload":
        k = draw(st.integers(3, len(words) - 1))
        words[k] = draw(word | st.integers(256, 10**6).map(str))
    elif op == "rtpmap":
        name = words[1].split("/")[0]
        words[1] = name + draw(st.sampled_from(["", "/"]) | word.map(lambda w: "/" + w))
    else:
        words[1] = draw(word | st.integers(len(MIDS), 10**6).map(str))
    if op != "setup":
        lines[i] = " ".join(words)
    return "\r\n".join(lines) + "\r\n"
