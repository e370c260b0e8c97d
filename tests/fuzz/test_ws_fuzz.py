"""`/ws` fuzzed with a Hypothesis state machine: one connection, random sequences of the protocol's messages,
valid and broken (docs/protocol.md).

Each step says what the protocol promises in answer (a reply of some types, an error with some codes, nothing,
a close with some codes, or for a reconnect an HTTP refusal of the upgrade); after every step the client pings
with a fresh token and reads up to its pong, so each step's answers are checked in order and a connection that
died is noticed at the step that killed it.
Invariants: the server stays healthy and logs no traceback; when the machine ends no session is left.
"""
from __future__ import annotations

import base64
import json
import math
import re
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Callable
from urllib.parse import quote

import cv2
import numpy as np
import websockets
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from assistant.transport.messages import MAX_IMAGE_SIDE, MAX_MESSAGE, RATES

from .live import CALL_TIMEOUT, LiveServer
from .strategies import deep_json, json_values

TYPES = ("hello", "image", "ping", "timings", "bye")  # what a client may send
SYNC = "fuzz-sync-token"  # longer than json_values' keys, so a fuzzed ping's t never looks like a sync token
RECV_TIMEOUT = CALL_TIMEOUT  # a hang detector: a step that gets no answer at all
# A hello's sample_rate: the rates the server takes (docs/protocol.md) and what it must refuse: odd rates (once
# a kernel of tens of MB, up to GBs, to resample from), infinities, floats, strings. Any of them is cheap now.
refused_rates = st.one_of(
    st.integers(8, 192).map(lambda k: k * 1000), st.integers(7000, 200_000), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), json_values,
    st.sampled_from([8001, 9000, 191_999, 16000.5, math.inf, -math.inf, "16000", None, True, 0, -1]))
# half of them taken (not a one_of: Hypothesis flattens one_ofs, maps included, and picks among their branches)
rates: st.SearchStrategy[Any] = st.booleans().flatmap(
    lambda taken: st.sampled_from(RATES) | st.sampled_from(RATES).map(float) if taken else refused_rates)
MAX_SEED = 2**32 - 1
# what ?seed= may say: half of them 0..MAX_SEED in ASCII digits (taken), the rest mostly refused
seeds: st.SearchStrategy[str] = st.booleans().flatmap(lambda taken: st.one_of(
    st.integers(0, MAX_SEED).map(str), st.sampled_from(["0", "01", "0" * 10, str(MAX_SEED)])) if taken else st.one_of(
    st.integers(0, 2**80).map(str), st.integers(max_value=-1).map(str), st.text(max_size=12),
    st.sampled_from(["", str(MAX_SEED + 1), "0" * 11, "+1", " 1", "1 ", "1.0", "\u00b2", "\u0663", "1e3", "0x10",
                     "9" * 5000])))


def takes_rate(rate: Any) -> bool:
    """Whether a hello's sample_rate is one of RATES (16000.0 is; True, "16000" and 16000.5 are not)."""
    return isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate in RATES


def takes_seed(seed: str) -> bool:
    """Whether ?seed= names a seed: ASCII digits, 0..MAX_SEED (docs/protocol.md)."""
    return re.fullmatch(r"[0-9]{1,10}", seed) is not None and int(seed) <= MAX_SEED


@dataclass
class Step:
    """One thing the client does and what the protocol promises back. `reply`: the answers allowed, by type,
    "" for none; `codes`: an error's allowed codes (None: any); `match`: fields a reply other than an error must
    have; `close`: the server closes with one of these codes instead (the client then reconnects). A binary or
    text message is `data` (base64 for binary) repeated `repeat` times, so that huge messages stay small in a
    saved case. A reconnect's `status`: the upgrade is refused with this HTTP status and a JSON error with one
    of `codes` (the client then connects without a query)."""

    action: str  # "text", "binary" or "reconnect"
    data: str = ""
    repeat: int = 1
    reply: list[str] = field(default_factory=lambda: [""])
    codes: list[str] | None = None
    match: dict[str, Any] | None = None
    close: list[int] | None = None
    query: str = ""  # a reconnect's query string
    status: int | None = None

    def payload(self) -> str | bytes:
        if self.action == "binary":
            return base64.b64decode(self.data) * self.repeat
        return self.data * self.repeat

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v != Step.__dataclass_fields__[k].default}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        return cls(**data)


def text(message: Any, **expect: Any) -> Step:
    """A text step carrying `message` as JSON."""
    return Step("text", json.dumps(message), **expect)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class Flooded(Exception):
    """The server closed the connection with 1008 "flood": faster than its input budget."""


def _ended(error: websockets.ConnectionClosed) -> Exception:
    """A closed connection, as Flooded when the server closed it for flooding, else as a failed check."""
    if error.rcvd is not None and (error.rcvd.code, error.rcvd.reason) == (1008, "flood"):
        return Flooded()
    return AssertionError(f"the server closed the connection: {error.rcvd}")


def bursts() -> tuple[float, float, float]:
    """The most (audio seconds, bytes, messages) a connection may send at once under the server's default
    input budget (assistant.access.InputLimits; 0 where the server has no such limit)."""
    from assistant import access

    limits = getattr(access, "InputLimits", None)
    limits = limits() if limits is not None else None
    return (getattr(limits, "audio_burst", 0.0), getattr(limits, "bytes_per_second", 0.0),
            getattr(limits, "messages_per_second", 0.0))


class Conversation:
    """One client of the live server's /ws, which performs Steps and checks what comes back.

    The server may close a connection that sends faster than its input budget (1008 "flood"). Whether it does
    depends on timing, but a budget starts full and only refills, so a flood is only allowed once the connection
    has sent more than a burst of audio seconds, bytes or messages; the client then reconnects."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.ws: ClientConnection | None = None
        self._held = ExitStack()
        self.syncs = 0
        self.rate = 48_000
        self.sent = [0.0, 0, 0]  # audio seconds, bytes, messages on this connection
        self.bursts = bursts()

    def connect(self, query: str = "") -> dict[str, Any]:
        """Open a connection; the server's first text message, `ready`, is returned."""
        self.ws = self._held.enter_context(connect(
            f"ws://127.0.0.1:{self.server.port}/ws{query}", max_size=None, proxy=None, open_timeout=RECV_TIMEOUT,
            close_timeout=5, ping_interval=None))
        self.sent = [0.0, 0, 0]
        first = self._next_text()
        assert first["type"] == "ready", first
        assert isinstance(first["session"], int) and first["sample_rate"] > 0 and first["frame_size"] > 0
        self.rate = first["input_rate"]
        return first

    def close(self) -> None:
        """Leave and wait until the server has let the session go (so the next connection finds a free slot)."""
        self._held.close()
        self.ws = None
        assert self.server.wait_for_no_sessions(), "the session stayed after its connection closed"

    def _send(self, payload: str | bytes) -> None:
        assert self.ws is not None
        size = len(payload) if isinstance(payload, bytes) else len(payload.encode("utf-8", "surrogatepass"))
        audio = size / 2 / self.rate if isinstance(payload, bytes) else 0.0
        self.sent = [self.sent[0] + audio, self.sent[1] + size, self.sent[2] + 1]
        try:
            self.ws.send(payload)
        except websockets.ConnectionClosed as e:
            raise _ended(e) from None

    def _next_text(self) -> dict[str, Any]:
        """The next text message, skipping speech (binary) and captions."""
        assert self.ws is not None
        while True:
            try:
                msg = self.ws.recv(timeout=RECV_TIMEOUT)
            except websockets.ConnectionClosed as e:
                raise _ended(e) from None
            if isinstance(msg, str):
                data = json.loads(msg)
                assert isinstance(data, dict) and isinstance(data.get("type"), str), msg[:200]
                if data["type"] == "hello" and isinstance(data.get("input_rate"), int):
                    self.rate = data["input_rate"]
                if data["type"] != "caption":
                    return data

    def _closed_code(self) -> int | None:
        """Read until the server closes; its close code."""
        assert self.ws is not None
        try:
            while True:
                self.ws.recv(timeout=RECV_TIMEOUT)
        except websockets.ConnectionClosed as e:
            if isinstance(_ended(e), Flooded):
                raise Flooded() from None
            return e.rcvd.code if e.rcvd is not None else None

    def sync(self) -> list[dict[str, Any]]:
        """Ping with a fresh token and return the text messages that came before its pong."""
        self.syncs += 1
        token = {SYNC: self.syncs}
        self._send(json.dumps({"type": "ping", "t": token}))
        answers = []
        while (msg := self._next_text()) != {"type": "pong", "t": token}:
            answers.append(msg)
        return answers

    def do(self, step: Step) -> None:
        """Perform `step` and check that the server answered as the protocol promises (or closed it as a
        flood, where the connection has sent more than a burst)."""
        try:
            self._do(step)
        except Flooded:
            assert any(sent > burst for sent, burst in zip(self.sent, self.bursts)), \
                f"closed as a flood after sending {self.sent} (audio s, bytes, messages); bursts {self.bursts}"
            self.ws = None
            self.close()
            self.connect()

    def _do(self, step: Step) -> None:
        if step.action == "reconnect":
            self.close()
            if step.status is None:
                self.connect(step.query)
                return
            try:
                self.connect(step.query)
            except InvalidStatus as e:
                response = e.response
                assert response.status_code == step.status, (step.status, response.status_code, response.body)
                assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
                refusal = json.loads(response.body)
                assert isinstance(refusal, dict), refusal
                self._check([{"type": "error", "message": refusal.get("error"), "code": refusal.get("code")}],
                            Step("text", reply=["error"], codes=step.codes))
            else:
                raise AssertionError(f"connected with {step.query!r}: expected HTTP {step.status}")
            self.connect()
            return
        self._send(step.payload())
        if step.close is not None:
            code = self._closed_code()
            assert code in step.close, f"closed with {code}, expected one of {step.close}"
            self.ws = None
            self.close()
            self.connect()
            return
        self._check(self.sync(), step)

    @staticmethod
    def _check(answers: list[dict[str, Any]], step: Step) -> None:
        if "" in step.reply and not answers:
            return
        assert len(answers) == 1, f"expected one of {step.reply}, got {answers}"
        answer = answers[0]
        assert answer["type"] in step.reply, f"expected one of {step.reply}, got {answer}"
        if answer["type"] == "error":
            assert isinstance(answer.get("message"), str) and answer["message"], answer
            assert isinstance(answer.get("code"), str) and answer["code"], answer
            assert step.codes is None or answer["code"] in step.codes, (step.codes, answer)
        for key, value in (step.match or {}).items() if answer["type"] != "error" else ():
            assert canonical(answer.get(key)) == canonical(value), (key, value, answer)


# -- what the rules send -------------------------------------------------------------------------------------
def pcm(samples: np.ndarray) -> str:
    return base64.b64encode(samples.astype("<i2").tobytes()).decode()


def bgr(width: int, height: int, fill: int) -> np.ndarray:
    frame = np.full((height, width, 3), fill, np.uint8)
    frame[::2, ::3] = 255 - fill
    return frame


def compressed(width: int, height: int, fmt: str) -> str:
    """A real JPEG or PNG of a small frame, base64: what a client might send instead of raw BGR."""
    ok, data = cv2.imencode("." + fmt, bgr(width, height, 40))
    assert ok
    return base64.b64encode(data.tobytes()).decode()


invalid_json = st.one_of(
    st.text(max_size=40).filter(lambda s: not _parses(s)),
    st.sampled_from(['{"type": "ping"', "{'type': 'ping'}", '{"type": ping}', "", " ", "\x00", "[", "nul"]),
    json_values.map(lambda v: json.dumps({"type": "ping", "t": v})).map(lambda s: s[: len(s) // 2]),
)
non_objects = json_values.filter(lambda v: not isinstance(v, dict)).map(json.dumps)
typeless = st.dictionaries(st.text(max_size=8).filter(lambda k: k != "type"), json_values, max_size=3)
unknown_types = (st.text(max_size=20) | json_values).filter(lambda t: not isinstance(t, str) or t not in TYPES)


def _parses(s: str) -> bool:
    try:
        json.loads(s)
    except (ValueError, RecursionError):
        return False
    return True


class WsMachine(RuleBasedStateMachine):
    """One /ws client sending random protocol messages; every step is checked as it goes (Conversation.do)."""

    def __init__(self, server: LiveServer,
                 on_failure: Callable[[list[Step], BaseException], None] | None = None) -> None:
        """`on_failure` is told the steps so far when a check fails (bench/fuzz.py saves them)."""
        super().__init__()
        self.server, self.on_failure = server, on_failure
        self.trace: list[Step] = []
        self.errors_before = len(server.errors)
        self.chat = Conversation(server)
        self._guard(self.chat.connect)

    def _guard(self, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except BaseException as e:
            if self.on_failure is not None:
                self.on_failure(list(self.trace), e)
            raise

    def do(self, step: Step) -> None:
        self.trace.append(step)
        self._guard(lambda: self.chat.do(step))

    # hello
    def expect_hello(self, fields: dict[str, Any]) -> dict[str, Any]:
        """What a hello with `fields` is answered: a hello with the rate it declares when that is one of RATES
        (the rate so far without one), else an error bad_message."""
        rate = fields.get("sample_rate", self.chat.rate)
        if takes_rate(rate):
            return {"reply": ["hello"], "match": {"input_rate": int(rate)}}
        return {"reply": ["error"], "codes": ["bad_message"]}

    @rule(rate=rates)
    def hello(self, rate: Any) -> None:
        self.do(text({"type": "hello", "sample_rate": rate}, **self.expect_hello({"sample_rate": rate})))

    @rule(fields=st.dictionaries(st.sampled_from(["sample_rate", "rate", "t"]), json_values, max_size=2))
    def hello_fuzzed(self, fields: dict[str, Any]) -> None:
        self.do(text({"type": "hello", **fields}, **self.expect_hello(fields)))

    # audio
    @rule(samples=st.integers(0, 4800), seed=st.integers(0, 2**16))
    def audio(self, samples: int, seed: int) -> None:
        noise = np.random.default_rng(seed).integers(-32768, 32768, samples)
        self.do(Step("binary", pcm(noise)))

    @rule(data=st.binary(max_size=99).filter(lambda b: len(b) % 2 == 1))
    def audio_odd_length(self, data: bytes) -> None:
        self.do(Step("binary", base64.b64encode(data).decode(), reply=["error"], codes=["bad_audio"]))

    @rule(unit=st.binary(min_size=2, max_size=64).filter(lambda b: len(b) % 2 == 0),
          size=st.integers(2**20, MAX_MESSAGE) | st.just(MAX_MESSAGE))
    def audio_huge(self, unit: bytes, size: int) -> None:
        repeat = size // len(unit)
        self.do(Step("binary", base64.b64encode(unit).decode(), repeat=repeat))

    @rule(binary=st.booleans(), over=st.integers(1, 2**20))
    def over_the_size_limit(self, binary: bool, over: int) -> None:
        """A message over 8 MiB closes the connection with 1009 (docs/protocol.md); the client reconnects."""
        if binary:
            self.do(Step("binary", base64.b64encode(b"\x00\x01").decode(), repeat=(MAX_MESSAGE + over + 1) // 2,
                         close=[1009]))
        else:
            self.do(Step("text", "x", repeat=MAX_MESSAGE + over, close=[1009]))

    # images
    @rule(width=st.integers(1, 48), height=st.integers(1, 48), fill=st.integers(0, 255))
    def image(self, width: int, height: int, fill: int) -> None:
        data = base64.b64encode(bgr(width, height, fill).tobytes()).decode()
        self.do(text({"type": "image", "width": width, "height": height, "encoding": "bgr24", "data": data}))

    @rule(side=st.sampled_from([640, 1024, 1280]))
    def image_large(self, side: int) -> None:
        data = base64.b64encode(bgr(side, side * 9 // 16, 7).tobytes()).decode()
        self.do(text({"type": "image", "width": side, "height": side * 9 // 16, "data": data}))

    @rule(fmt=st.sampled_from(["jpg", "png"]), encoding=st.sampled_from(["jpeg", "png", "image/jpeg", None]),
          width=st.integers(2, 32), height=st.integers(2, 32))
    def image_compressed(self, fmt: str, encoding: str | None, width: int, height: int) -> None:
        """Only raw BGR is accepted: a JPEG or PNG, named or not, is refused (its size is not W*H*3)."""
        message = {"type": "image", "width": width, "height": height, "data": compressed(width, height, fmt)}
        if encoding is not None:
            message["encoding"] = encoding
        self.do(text(message, reply=["error"]))

    @rule(data=st.text(max_size=60) | st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode() + "!"),
          width=st.integers(1, 64), height=st.integers(2, 64))
    def image_garbage_data(self, data: str, width: int, height: int) -> None:
        self.do(text({"type": "image", "width": width, "height": height, "data": data}, reply=["", "error"]))

    @rule(width=st.integers(-2**64, 2**64) | st.sampled_from([0, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE + 1, 10**9]),
          height=st.integers(-2**64, 2**64) | st.sampled_from([0, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE + 1, 10**9]))
    def image_huge_declared(self, width: int, height: int) -> None:
        """Declared sides far beyond the data (4 bytes of base64 = 3 bytes) are refused, never allocated."""
        if (width, height) != (1, 1):
            self.do(text({"type": "image", "width": width, "height": height, "data": "AAAA"}, reply=["error"]))

    @rule(sides=st.lists(st.sampled_from(["Infinity", "-Infinity", "NaN", "1e999", "-1e999", "2", "2.0"]),
                         min_size=2, max_size=2).filter(lambda s: not set(s) <= {"2", "2.0"}))
    def image_infinite(self, sides: list[str]) -> None:
        """A side JSON reads as infinity or NaN (int() raises OverflowError or ValueError) is refused."""
        message = f'{{"type": "image", "width": {sides[0]}, "height": {sides[1]}, "data": "AAAA"}}'
        self.do(Step("text", message, reply=["error"], codes=["bad_message"]))

    @rule(fields=st.dictionaries(st.sampled_from(["width", "height", "data", "encoding"]), json_values, max_size=4))
    def image_fuzzed(self, fields: dict[str, Any]) -> None:
        self.do(text({"type": "image", **fields}, reply=["", "error"]))

    # the other messages
    @rule(t=json_values)
    def ping(self, t: Any) -> None:
        self.do(text({"type": "ping", "t": t}, reply=["pong"], match={"t": t}))

    @rule(extra=st.dictionaries(st.text(max_size=8).filter(lambda k: k != "type"), json_values, max_size=2))
    def timings(self, extra: dict[str, Any]) -> None:
        self.do(text({**extra, "type": "timings"}, reply=["timings"]))

    @rule(kind=unknown_types)
    def unknown_type(self, kind: Any) -> None:
        self.do(text({"type": kind}, reply=["error"], codes=["unknown_type"]))

    @rule(message=invalid_json)
    def not_json(self, message: str) -> None:
        self.do(Step("text", message, reply=["error"], codes=["bad_json"]))

    @rule(message=non_objects | typeless.map(json.dumps))
    def not_a_typed_object(self, message: str) -> None:
        self.do(Step("text", message, reply=["error"], codes=["bad_json"]))

    @rule(message=deep_json())
    def nested(self, message: str) -> None:
        """Deeply nested JSON (no object with a type at the top): refused as bad JSON, however deep."""
        self.do(Step("text", message, reply=["error"], codes=["bad_json"]))

    @rule(depth=st.integers(900, 1100) | st.integers(1, 5000))
    def nested_ping(self, depth: int) -> None:
        """A ping whose t is nested around and past the recursion limit: answered (t echoed, which the server
        must also be able to write) or refused as bad JSON where it is too deep to read."""
        t = "[" * depth + "]" * depth
        message = '{"type": "ping", "t": ' + t + "}"
        if depth < 500:  # well within the limit
            self.do(Step("text", message, reply=["pong"], match={"t": json.loads(t)}))
        else:
            self.do(Step("text", message, reply=["pong", "error"], codes=["bad_json"]))

    @rule(size=st.integers(2**20, MAX_MESSAGE))
    def huge_text(self, size: int) -> None:
        self.do(Step("text", "{", repeat=size, reply=["error"], codes=["bad_json"]))

    @rule(extra=st.booleans())
    def bye(self, extra: bool) -> None:
        """`bye` ends the session: the server closes normally; the client reconnects."""
        self.do(text({"type": "bye", **({"reason": "done"} if extra else {})}, close=[1000]))

    @rule(seed=st.none() | seeds)
    def reconnect(self, seed: str | None) -> None:
        """A new connection, with ?seed= or not: a seed that is not 0..2**32-1 is refused (HTTP 400 bad_seed)
        before the upgrade."""
        if seed is None:
            self.do(Step("reconnect"))
        elif takes_seed(seed):
            self.do(Step("reconnect", query=f"?seed={quote(seed, safe='')}"))
        else:
            self.do(Step("reconnect", query=f"?seed={quote(seed, safe='')}", status=400, codes=["bad_seed"]))

    @invariant()
    def healthy(self) -> None:
        self._guard(lambda: self._healthy())

    def _healthy(self) -> None:
        assert self.server.healthy()
        assert self.server.errors[self.errors_before:] == []
        assert len(self.server.engine.sessions) == 1

    def teardown(self) -> None:
        self._guard(self.chat.close)
        self._guard(self._healthy_and_empty)

    def _healthy_and_empty(self) -> None:
        assert self.server.healthy() and self.server.engine.sessions == []
        assert self.server.errors[self.errors_before:] == []


def replay(server: LiveServer, steps: list[Step]) -> None:
    """Perform saved steps on a fresh connection with every check the machine makes."""
    chat, errors_before = Conversation(server), len(server.errors)
    chat.connect()
    try:
        for step in steps:
            chat.do(step)
            assert server.healthy() and server.errors[errors_before:] == []
    finally:
        chat.close()
    assert server.engine.sessions == [] and server.errors[errors_before:] == []


# CI budget: deterministic (derandomize), nothing written to a .hypothesis/ database in the checkout.
CI_SETTINGS = settings(max_examples=30, stateful_step_count=40, deadline=None, derandomize=True, database=None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                              HealthCheck.filter_too_much])


def test_ws_message_sequences(server: LiveServer) -> None:
    run_state_machine_as_test(lambda: WsMachine(server), settings=CI_SETTINGS)


def test_a_valid_exchange_passes_the_checks(server: LiveServer) -> None:
    """The checks accept what the protocol promises (and so can tell it from what it does not)."""
    replay(server, [text({"type": "hello", "sample_rate": 16000}, reply=["hello"], match={"input_rate": 16000}),
                    Step("binary", pcm(np.zeros(320, np.int16))),
                    text({"type": "ping", "t": [1, "x"]}, reply=["pong"], match={"t": [1, "x"]}),
                    Step("text", "nope", reply=["error"], codes=["bad_json"])])


def test_a_wrong_expectation_is_caught(server: LiveServer) -> None:
    """A check that cannot fail proves nothing: a ping answered with a pong is not an error."""
    try:
        replay(server, [text({"type": "ping", "t": 1}, reply=["error"])])
    except AssertionError:
        return
    raise AssertionError("the replay accepted a pong where an error was expected")
