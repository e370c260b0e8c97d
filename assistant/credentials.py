"""Signed, short-lived credentials: session tokens that a page's origin mints for its visitors, and the
time-limited TURN credentials handed to the page with the ICE servers (docs/reliability.md).

A session token reads `s1.EXPIRES.ORIGIN.SIGNATURE`: EXPIRES in Unix seconds, ORIGIN base64url, SIGNATURE the
base64url HMAC-SHA256 of `s1.EXPIRES.ORIGIN` under the server's token secret. The origin's own backend, holding the
same secret (`tutti token`, or `mint_session_token`), mints one per visit; the server accepts it from that origin
only, before it expires, once. TURN credentials follow the TURN REST convention that coturn's `use-auth-secret`
checks: username `EXPIRES:tutti`, password the base64 HMAC-SHA1 of the username under the shared secret.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import TuttiError

MIN_TTL, MAX_TTL = 60, 600  # seconds a session token may live
VERSION = "s1"


class InvalidToken(TuttiError):
    """A token that does not start a session: `reason` is the machine-readable code."""

    def __init__(self, text: str, reason: str = "token") -> None:
        super().__init__(text)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def origin_of(text: str) -> str:
    """`text` as origins are compared (scheme://host[:port], lower case, no trailing slash); ValueError when it
    is not an origin."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{text!r} is not an origin (scheme://host[:port])")
    return text.rstrip("/").lower()


def mint_session_token(secret: bytes, origin: str, ttl: int, now: float | None = None) -> str:
    """A token that starts one session from pages of `origin` within `ttl` seconds (MIN_TTL-MAX_TTL)."""
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise ValueError(f"a session token lives {MIN_TTL}-{MAX_TTL} s, not {ttl}")
    expires = int(time.time() if now is None else now) + ttl
    body = f"{VERSION}.{expires}.{_b64(origin_of(origin).encode())}"
    return f"{body}.{_sign(secret, body)}"


def verify_session_token(secret: bytes, token: str, origin: str | None, now: float | None = None) -> int:
    """The token's expiry when it is genuine, unexpired and bound to `origin` (the request's Origin header);
    otherwise InvalidToken saying which."""
    now = time.time() if now is None else now
    try:
        version, expires_text, origin_b64, signature = token.split(".")
        expires = int(expires_text)
        bound = _unb64(origin_b64).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("the token is not a Tutti session token") from None
    if version != VERSION or not hmac.compare_digest(signature, _sign(secret, f"{version}.{expires_text}.{origin_b64}")):
        raise InvalidToken("the token's signature is wrong")
    if expires <= now:
        raise InvalidToken("the token has expired: ask the page for a new one", "token_expired")
    if expires > now + MAX_TTL + 5:  # a few seconds of clock difference between the minting host and this one
        raise InvalidToken(f"the token lives longer than {MAX_TTL} s")
    if origin is None or origin.rstrip("/").lower() != bound:
        raise InvalidToken(f"the token was minted for {bound}, not for this page", "token_origin")
    return expires


def read_secret(path: Path, what: str) -> bytes:
    """A shared secret from a file (surrounding whitespace dropped); at least 16 bytes."""
    try:
        secret = path.read_bytes().strip()
    except OSError as e:
        raise ValueError(f"cannot read the {what} from {path}: {e.strerror}") from None
    if len(secret) < 16:
        raise ValueError(f"the {what} in {path} is shorter than 16 bytes")
    return secret


@dataclass(frozen=True)
class IceServers:
    """The STUN/TURN servers handed to the page (`--ice-server`), TURN ones with credentials minted per request."""

    urls: tuple[str, ...] = ()
    turn_secret: bytes | None = None
    turn_ttl: int = 3600

    def __post_init__(self) -> None:
        for url in self.urls:
            scheme = url.split(":", 1)[0]
            if scheme not in ("stun", "turn", "turns") or ":" not in url or "@" in url:
                raise ValueError(f"--ice-server {url!r}: give stun:HOST[:PORT] or turn(s):HOST[:PORT][?transport=udp|tcp]"
                                 " (TURN credentials come from --turn-secret-file)")
            if scheme != "stun" and self.turn_secret is None:
                raise ValueError(f"--ice-server {url}: a TURN server needs --turn-secret-file")

    def config(self, now: float | None = None) -> list[dict[str, str | list[str]]]:
        """The `iceServers` of an RTCConfiguration, as the page passes it to RTCPeerConnection."""
        stun = [u for u in self.urls if u.startswith("stun:")]
        turn = [u for u in self.urls if not u.startswith("stun:")]
        servers: list[dict[str, str | list[str]]] = [{"urls": stun}] if stun else []
        if turn:
            username, credential = turn_credentials(self.turn_secret, self.turn_ttl, now)
            servers.append({"urls": turn, "username": username, "credential": credential})
        return servers


def turn_credentials(secret: bytes, ttl: int, now: float | None = None, user: str = "tutti") -> tuple[str, str]:
    """(username, password) valid for `ttl` seconds on a TURN server sharing `secret`."""
    username = f"{int(time.time() if now is None else now) + ttl}:{user}"
    return username, base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()
