"""Who may start a session, how often, and for how long: the Origin allowlist, tokens, the addresses a peer
may ask the server to send ICE checks to, the per-address limits and the session deadlines that `/ws` and
`/offer` enforce (docs/reliability.md).

A browser names the page that opened a connection in its `Origin` header, and a page from another site must
not be able to use a visitor's microphone through this server: its requests are refused. Allowed by default
are the server's own origin (the `Host` the request came to, on the same scheme) and pages on this machine
(localhost, 127.0.0.1, [::1] on any port); `--allow-origin` adds others. Clients that are not browsers send
no Origin and are not concerned by it.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import ssl
import time
from collections import defaultdict, deque
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

from aiohttp import web

from core.errors import TuttiError

from .credentials import IceServers, InvalidToken, origin_of, verify_session_token
from .session import Session

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
PURGE_ABOVE = 4096  # addresses tracked before those idle for a minute are dropped


class Refused(TuttiError):
    """A request refused before any session starts: the HTTP status, the message and a machine-readable code
    (also the reason in `tutti_rejected_total`)."""

    def __init__(self, status: int, text: str, code: str) -> None:
        super().__init__(text)
        self.status, self.code = status, code

    def response(self) -> web.Response:
        return web.json_response({"error": str(self), "code": self.code}, status=self.status)


@dataclass(frozen=True)
class OriginPolicy:
    allowed: frozenset[str] = frozenset()  # exact origins, e.g. "https://kiosk.example:8443"

    @classmethod
    def of(cls, origins: list[str] | None) -> OriginPolicy:
        """From `--allow-origin` values (scheme://host[:port]); a value that is not an origin is an error."""
        allowed = set()
        for origin in origins or []:
            try:
                allowed.add(origin_of(origin))
            except ValueError:
                raise ValueError(f"--allow-origin {origin!r}: give an origin, scheme://host[:port]") from None
        return cls(frozenset(allowed))

    def check(self, request: web.Request) -> None:
        """Refused (403) unless the request has no Origin or an allowed one."""
        origin = request.headers.get("Origin")
        if origin is not None:
            self.require(origin.lower(), request)

    def require(self, origin: str, request: web.Request) -> None:
        """Refused (403) unless `origin` (lower case) may start sessions here."""
        if not self.allows(origin, request):
            raise Refused(403, f"origin {origin!r} may not start sessions here (see --allow-origin)", "origin")

    def allows(self, origin: str, request: web.Request) -> bool:
        if origin in self.allowed or origin == f"{request.scheme}://{request.host}".lower():
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.hostname in LOCAL_HOSTS


class Tokens:
    """What starts a session when the server asks for tokens: the static bearer (`--token`, for desktop and kiosk
    clients) or a signed session token bound to the page's origin (credentials.py), good for one session. A
    token comes as `Authorization: Bearer TOKEN` or, where a browser cannot set headers (WebSocket), `?token=`."""

    def __init__(self, bearer: str | None = None, secret: bytes | None = None) -> None:
        """`secret`: the session tokens' key, shared with the pages' backends (`--token-secret-file`); with a
        bearer and no secret, one is drawn at start-up, for the tokens that `POST /token` mints."""
        if bearer is not None and len(bearer) < 16:
            raise ValueError("--token: use at least 16 characters")
        self.bearer = bearer
        self.secret = secret if secret is not None or bearer is None else os.urandom(32)
        self._spent: dict[str, int] = {}  # session tokens used, until they expire

    @property
    def required(self) -> bool:
        return self.secret is not None

    @staticmethod
    def presented(request: web.Request) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else request.query.get("token")

    def is_bearer(self, token: str | None) -> bool:
        return self.bearer is not None and token is not None and hmac.compare_digest(token.encode(), self.bearer.encode())

    def check(self, request: web.Request, spend: bool = True) -> None:
        """Refused (401) unless tokens are off or the request carries a good one; `spend`: this request starts a
        session, so a session token is used up."""
        if not self.required:
            return
        token = self.presented(request)
        if token is None:
            raise Refused(401, "this server needs a token (Authorization: Bearer, or ?token=)", "token_missing")
        if self.is_bearer(token):
            return
        try:
            expires = verify_session_token(self.secret, token, request.headers.get("Origin"))
        except InvalidToken as e:
            raise Refused(401, str(e), e.reason) from None
        now = time.time()
        for old in [t for t, until in self._spent.items() if until <= now]:
            del self._spent[old]
        if token in self._spent:
            raise Refused(401, "this session token has been used: ask the page for a new one", "token_used")
        if spend:
            self._spent[token] = expires


@dataclass(frozen=True)
class PeerAddresses:
    """The addresses a peer's ICE candidates may name. The server sends STUN checks to every candidate it keeps, so
    a peer could otherwise aim them at this host's own services or its private network's; dropped by default are
    loopback, link-local, multicast, reserved and unspecified addresses, ports under 1024, TCP candidates and
    DNS names other than mDNS `.local` ones. `networks` (`--peer-network`) keeps only addresses inside them;
    `loopback` only 127.0.0.1 (tests and benchmarks)."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    loopback: bool = False

    @classmethod
    def of(cls, networks: list[str] | None, loopback: bool = False) -> PeerAddresses:
        try:
            return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks or []), loopback)
        except ValueError as e:
            raise ValueError(f"--peer-network: {e}") from None

    def allows(self, candidate: str) -> bool:
        """Whether an SDP `candidate:...` attribute (its value, as in `a=candidate:...`) may be used."""
        fields = candidate.split()
        if len(fields) < 8 or fields[2].lower() != "udp":
            return False
        port = fields[5]
        if not (port.isascii() and port.isdigit() and len(port) <= 5 and 1024 <= int(port) <= 65535):
            return False
        try:
            ip = ipaddress.ip_address(fields[4])
        except ValueError:
            return fields[4].lower().endswith(".local") and not self.networks and not self.loopback
        if self.loopback:
            return ip == ipaddress.ip_address("127.0.0.1")
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if self.networks:
            return any(ip.version == n.version and ip in n for n in self.networks)
        return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


@dataclass(frozen=True)
class RateLimits:
    starts_per_minute: int = 30  # sessions one address may start in any 60 s
    sessions_per_address: int = 8  # sessions one address may hold at once


class Admission:
    """Per-address bookkeeping of session starts (a sliding minute) and of sessions held; one per server."""

    def __init__(self, limits: RateLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        self._starts: dict[str, deque[float]] = {}
        self._held: dict[str, int] = defaultdict(int)

    @contextmanager
    def hold(self, address: str | None) -> Iterator[None]:
        """A session from `address` for the duration of the block; Refused (429) over either limit."""
        limits, key = self.limits, address or "unknown"
        if limits is not None:
            now = self.clock()
            if len(self._starts) > PURGE_ABOVE:  # addresses seen long ago are forgotten, not kept forever
                for old in [k for k, v in self._starts.items() if not v or now - v[-1] >= 60]:
                    del self._starts[old]
            starts = self._starts.get(key, deque())
            while starts and now - starts[0] >= 60:
                starts.popleft()
            if self._held.get(key, 0) >= limits.sessions_per_address:
                raise Refused(429, f"{key} holds {limits.sessions_per_address} sessions already", "too_many_sessions")
            if len(starts) >= limits.starts_per_minute:
                raise Refused(429, f"{key} started {limits.starts_per_minute} sessions in the last minute; "
                                   "try again shortly", "rate")
            starts.append(now)
            self._starts[key] = starts
        self._held[key] += 1
        try:
            yield
        finally:
            self._held[key] -= 1
            if not self._held[key]:
                del self._held[key]
            if not self._starts.get(key):
                self._starts.pop(key, None)


class Bucket:
    """A rate with a burst: `spend` says False once more is asked than has flowed in."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.level, self.last = burst, clock()

    def spend(self, amount: float) -> bool:
        now = self.clock()
        self.level = min(self.burst, self.level + (now - self.last) * self.rate) - amount
        self.last = now
        return self.level >= 0


@dataclass(frozen=True)
class InputLimits:
    """How fast one WebSocket connection may send: a client that floods a session pays for its own messages (JSON,
    base64, resampling) in the loop that every session shares, so it is closed instead. A microphone sends one
    second of audio a second; a camera at 5 frames a second a few MB."""

    audio_speed: float = 1.5  # seconds of audio per second
    audio_burst: float = 4.0  # seconds of audio at once (a client catching up after a stall)
    bytes_per_second: float = 16 * 2**20  # with as much at once
    messages_per_second: float = 100.0  # with as many at once

    def budget(self) -> tuple[Bucket, Bucket, Bucket]:
        """A connection's (audio seconds, bytes, messages) buckets."""
        return (Bucket(self.audio_speed, self.audio_burst), Bucket(self.bytes_per_second, self.bytes_per_second),
                Bucket(self.messages_per_second, self.messages_per_second))


@dataclass(frozen=True)
class Timeouts:
    connect: float = 30.0  # seconds a WebRTC peer has to connect (ICE and DTLS)
    no_media: float = 30.0  # seconds a connected session may send no audio
    max_length: float = 4 * 3600.0  # seconds a session may last
    tick: float = 0.5  # how often the limits are looked at


class Deadlines:
    """A session's deadlines, looked at when its transport asks (`expired`) or awaited (`wait`)."""

    def __init__(self, session: Session, timeouts: Timeouts, connected: Callable[[], bool] = lambda: True) -> None:
        self.session, self.timeouts, self.connected = session, timeouts, connected
        self.start = time.monotonic()
        self.since: float | None = None  # when the session was first seen connected

    def expired(self) -> str | None:
        """What ends the session now, if anything: "connect_timeout", "no_media" or "max_length"."""
        now, t = time.monotonic(), self.timeouts
        if self.since is None:
            if self.connected():
                self.since = now
            return "connect_timeout" if self.since is None and now - self.start > t.connect else None
        if now - max(self.since, self.session.last_ready or self.since) > t.no_media:
            return "no_media"
        return "max_length" if now - self.start > t.max_length else None

    async def wait(self) -> str:
        while (cause := self.expired()) is None:
            await asyncio.sleep(self.timeouts.tick)
        return cause


def tls_context(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    """The server's TLS from `--certfile` and `--keyfile` (both or neither; None: plain HTTP). Browsers give a page
    the microphone and camera only on a secure origin: https, or http on this machine."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise ValueError("--certfile and --keyfile go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot use {certfile} and {keyfile} as the server's certificate and key: {e}") from None
    return context


@dataclass(frozen=True)
class Policy:
    """Everything a server enforces on the sessions it starts, as `tutti serve`'s options set it; one per app."""

    origins: OriginPolicy = OriginPolicy()
    tokens: Tokens = field(default_factory=Tokens)
    limits: RateLimits | None = None  # per client address, over both transports (None: none)
    timeouts: Timeouts = Timeouts()
    peers: PeerAddresses = PeerAddresses()
    ice: IceServers = IceServers()
    input: InputLimits = InputLimits()

    def admit(self, request: web.Request, admission: Admission) -> AbstractContextManager[None]:
        """The checks every session start passes, in order (origin, token, per-address limits): Refused, or the
        request's place under the limits, to hold for the session's life."""
        self.origins.check(request)
        self.tokens.check(request)
        return admission.hold(request.remote)
