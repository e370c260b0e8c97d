"""Tokens: the static bearer and signed, origin-bound, one-use session tokens on `/offer`, `/ws` and `/config`,
minted by `POST /token`, by `tutti token` and by the library; the ICE servers and TURN credentials of `/config`.
Real sockets on 127.0.0.1."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time

import aiohttp
import pytest
import pytest_asyncio
import websockets

from assistant.access import OriginPolicy, Tokens
from assistant.client import connect
from assistant.credentials import IceServers, InvalidToken, mint_session_token, verify_session_token
from assistant.engine import Engine
from tests.support.loopback import serving

from ..conftest import random_codec

BEARER = "kiosk-token-0123456789"
SECRET = b"shared-with-the-page-backend-0123"
KIOSK = "https://kiosk.example"
OFFER = json.dumps({"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "type": "offer"})  # refused as bad SDP


@pytest_asyncio.fixture
async def guarded():
    engine = Engine(random_codec(), max_sessions=4)
    ice = IceServers(("stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp"), b"turn-secret-0123456789", 600)
    async with serving(engine, origins=OriginPolicy.of([KIOSK]), tokens=Tokens(BEARER, SECRET), ice=ice) as (url, _):
        yield url, engine


async def post(url: str, path: str, body: str, headers: dict[str, str]) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url + path, data=body, headers={"Content-Type": "application/json"} | headers) as r:
            return r.status, await r.json()


async def ws_status(url: str, query: str = "", headers: dict[str, str] | None = None, origin: str | None = None) -> int:
    """101 when the WebSocket session starts (its `ready` read), else the HTTP status of the refusal."""
    try:
        async with websockets.connect(url.replace("http", "ws") + "/ws" + query, additional_headers=headers,
                                      origin=origin) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            return 101
    except websockets.InvalidStatus as e:
        return e.response.status_code


@pytest.mark.asyncio
async def test_the_static_token_is_needed_on_both_routes(guarded):
    url, _ = guarded
    status, body = await post(url, "/offer", OFFER, {})
    assert (status, body["code"]) == (401, "token_missing") and "Authorization: Bearer" in body["error"]
    status, body = await post(url, "/offer", OFFER, {"Authorization": "Bearer wrong-token-0123456789"})
    assert (status, body["code"]) == (401, "token")
    status, body = await post(url, "/offer", OFFER, {"Authorization": f"Bearer {BEARER}"})
    assert (status, body["code"]) == (400, "bad_sdp")  # past the token, refused for its SDP
    assert await ws_status(url) == 401 and await ws_status(url, "?token=nope") == 401
    assert await ws_status(url, f"?token={BEARER}") == 101
    assert await ws_status(url, headers={"Authorization": f"Bearer {BEARER}"}) == 101
    async with connect(url.replace("http", "ws") + "/ws", token=BEARER) as conn:  # the Python client
        assert conn.ready["type"] == "ready"
    with pytest.raises(ConnectionError, match="needs a token"):
        async with connect(url.replace("http", "ws") + "/ws"):
            pass


@pytest.mark.asyncio
async def test_session_tokens_start_one_session_from_their_origin_only(guarded):
    url, engine = guarded
    bearer = {"Authorization": f"Bearer {BEARER}"}
    status, minted = await post(url, "/token", json.dumps({"origin": KIOSK, "ttl": 120}), bearer)
    assert status == 200 and minted["ttl"] == 120
    token = minted["token"]
    assert await ws_status(url, f"?token={token}", origin="http://localhost:3000") == 401  # bound to the kiosk
    assert await ws_status(url, f"?token={token}") == 401  # no Origin: not a page of the kiosk either
    assert await ws_status(url, f"?token={token}", origin=KIOSK) == 101
    assert await ws_status(url, f"?token={token}", origin=KIOSK) == 401  # used up
    for body, headers, expected in ((json.dumps({"origin": KIOSK}), {}, (401, "token")),  # minting needs the bearer
                                    (json.dumps({"origin": KIOSK}), {"Authorization": f"Bearer {token}"}, (401, "token")),
                                    (json.dumps({"origin": "https://evil.example"}), bearer, (403, "origin")),
                                    (json.dumps({"origin": KIOSK, "ttl": 3600}), bearer, (400, "bad_request")),
                                    ("[1, 2]", bearer, (400, "bad_request"))):
        status, answer = await post(url, "/token", body, headers)
        assert (status, answer["code"]) == expected, body
    for _ in range(20):
        if not engine.sessions:
            break
        await asyncio.sleep(0.05)
    assert engine.sessions == []


@pytest.mark.asyncio
async def test_tokens_minted_elsewhere_with_the_shared_secret_are_checked(guarded, tmp_path):
    url, _ = guarded
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    minted = subprocess.run([sys.executable, "-m", "assistant.cli", "token", "--secret-file", str(secret_file),
                             "--origin", KIOSK, "--ttl", "60"], capture_output=True, text=True, check=True).stdout.strip()
    assert await ws_status(url, f"?token={minted}", origin=KIOSK) == 101
    now = time.time()
    expired = mint_session_token(SECRET, KIOSK, 60, now=now - 61)
    forged = mint_session_token(b"another-secret-0123456789", KIOSK, 60)
    tampered = minted[:-2] + ("AA" if not minted.endswith("AA") else "BB")
    codes = []
    for token in (expired, forged, tampered, "s1.garbage"):
        status, body = await post(url, "/offer", OFFER, {"Authorization": f"Bearer {token}", "Origin": KIOSK})
        codes.append((status, body["code"]))
    assert codes == [(401, "token_expired"), (401, "token"), (401, "token"), (401, "token")]
    far = mint_session_token(SECRET, KIOSK, 600, now=now + 3000)  # genuine, but it would live an hour from now
    with pytest.raises(InvalidToken, match="longer than 600 s"):
        verify_session_token(SECRET, far, KIOSK)
    assert verify_session_token(SECRET, minted, KIOSK.upper()) > now  # origins compare case-blind
    with pytest.raises(ValueError, match="60-600"):
        mint_session_token(SECRET, KIOSK, 30)


@pytest.mark.asyncio
async def test_config_hands_the_page_its_ice_servers_with_fresh_turn_credentials(guarded):
    url, _ = guarded
    async with aiohttp.ClientSession() as http:
        assert (await http.get(url + "/config")).status == 401  # the same credentials as a session start
        response = await http.get(url + "/config", headers={"Authorization": f"Bearer {BEARER}"})
        servers = (await response.json())["iceServers"]
    stun, turn = servers
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}
    assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
    expires, user = turn["username"].split(":")
    assert user == "tutti" and 590 <= int(expires) - time.time() <= 601
    expected = base64.b64encode(hmac.new(b"turn-secret-0123456789", turn["username"].encode(), hashlib.sha1).digest())
    assert turn["credential"] == expected.decode()  # what coturn's use-auth-secret computes
    with pytest.raises(ValueError, match="--turn-secret-file"):
        IceServers(("turn:192.0.2.1:3478",))
    with pytest.raises(ValueError, match="stun:HOST"):
        IceServers(("http://192.0.2.1",))


def test_serve_refuses_a_short_token_and_an_unreadable_secret(tmp_path):
    for extra, words in ((["--token", "short"], "16 characters"),
                         (["--token-secret-file", str(tmp_path / "missing")], "cannot read the token secret"),
                         (["--ice-server", "turn:192.0.2.1"], "--turn-secret-file"),
                         (["--peer-network", "10.0.0.0/33"], "--peer-network")):
        run = subprocess.run([sys.executable, "-m", "assistant.cli", "serve", "--model", "echo", "--port", "0", *extra],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and words in run.stderr, (extra, run.stderr)
