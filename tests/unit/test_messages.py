"""The WebSocket protocol's serializer, shared by the server and the Python client, and the offer parser."""
from __future__ import annotations

import json

import numpy as np
import pytest

from assistant.access import PeerAddresses, Refused
from assistant.transport import messages
from assistant.transport.webrtc import MAX_CANDIDATES, parse_offer


def test_audio_round_trips_as_int16():
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0], np.float32)
    data = messages.audio(samples)
    assert len(data) == 2 * len(samples)
    np.testing.assert_allclose(messages.parse_audio(data), np.clip(samples, -1, 1), atol=1 / 32767)
    with pytest.raises(messages.ProtocolError, match="whole int16") as refused:
        messages.parse_audio(b"\x00\x01\x02")
    assert refused.value.reason == "bad_audio"


def test_images_round_trip_and_bad_ones_are_named():
    frame = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    sent = messages.parse(messages.image(frame))
    assert sent["type"] == "image" and (sent["width"], sent["height"]) == (10, 6)
    np.testing.assert_array_equal(messages.parse_image(sent), frame)
    for bad, words in ((dict(sent, data="AAAA"), "do not make a 10x6"), (dict(sent, encoding="rgb24"), "bgr24"),
                       (dict(sent, width=5000), "sides"), ({"type": "image"}, "integer width")):
        with pytest.raises(messages.ProtocolError, match=words):
            messages.parse_image(bad)


def test_text_messages_need_an_object_with_a_type():
    assert messages.parse(messages.message("caption", text=" red", step=3)) == {"type": "caption", "text": " red",
                                                                                "step": 3}
    for bad in ("not json", "[1, 2]", json.dumps({"kind": "hello"})):
        with pytest.raises(messages.ProtocolError, match="JSON objects") as refused:
            messages.parse(bad)
        assert refused.value.reason == "bad_json"
    assert messages.parse_rate({"sample_rate": 16000}, 48_000) == 16000
    assert messages.parse_rate({}, 48_000) == 48_000
    for rate in (5, "fast", None, 8001, 1e999, True, 16000.5):  # 8001: a kernel of 82 MB to resample from it
        with pytest.raises(messages.ProtocolError, match="one of 8000, 11025"):
            messages.parse_rate({"sample_rate": rate}, 48_000)


SDP = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
       "a=candidate:2 1 udp 2122260223 192.0.2.7 50001 typ host\r\n"
       "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n")


def test_offers_are_parsed_and_loopback_keeps_only_local_candidates():
    body = json.dumps({"sdp": SDP, "type": "offer"})
    dropped: list[str] = []
    assert parse_offer(body, on_dropped=dropped.append) == SDP.replace(SDP.splitlines(True)[3], "")
    assert dropped == [SDP.splitlines()[3]]  # this host's loopback is no place to send ICE checks to
    local = parse_offer(body.encode(), PeerAddresses(loopback=True))
    assert "127.0.0.1 50000" in local and "192.0.2.7" not in local and local.startswith("v=0\r\nm=audio")
    media = SDP + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 4
    crowded = SDP + "a=candidate:9 1 udp 1 127.0.0.1 1 typ host\r\n" * (MAX_CANDIDATES - 1)
    for bad, status, reason in ((b"\xff\xfe", 400, "bad_offer"), ('{"sdp": "v=0", "type": "answer"}', 400, "bad_offer"),
                                ('{"sdp": "v=0\\r\\nm=video 9 x 96\\r\\n", "type": "offer"}', 400, "no_audio"),
                                (json.dumps({"sdp": media, "type": "offer"}), 400, "too_many_media"),
                                (json.dumps({"sdp": crowded, "type": "offer"}), 400, "too_many_candidates")):
        with pytest.raises(Refused) as refused:
            parse_offer(bad)
        assert (refused.value.status, refused.value.code) == (status, reason)


@pytest.mark.parametrize("address, port, transport, kept", [
    ("198.51.100.7", 50000, "udp", True), ("10.1.2.3", 61000, "UDP", True), ("fd00::5", 50000, "udp", True),
    ("4f8a1b2c-1111-2222-3333-444455556666.local", 50000, "udp", True),  # mDNS: resolved on the local network
    ("127.0.0.1", 50000, "udp", False), ("::1", 50000, "udp", False), ("::ffff:127.0.0.1", 50000, "udp", False),
    ("169.254.169.254", 50000, "udp", False), ("fe80::1", 50000, "udp", False), ("224.0.0.251", 50000, "udp", False),
    ("0.0.0.0", 50000, "udp", False), ("255.255.255.255", 50000, "udp", False), ("240.0.0.1", 50000, "udp", False),
    ("198.51.100.7", 53, "udp", False), ("198.51.100.7", 50000, "tcp", False), ("metadata.internal", 50000, "udp", False),
])
def test_candidates_naming_this_host_or_special_ranges_are_dropped(address, port, transport, kept):
    candidate = f"candidate:1 1 {transport} 2122260223 {address} {port} typ host"
    assert PeerAddresses().allows(candidate) is kept
    assert not PeerAddresses().allows("candidate:1 1 udp 2122260223")  # truncated


def test_peer_networks_keep_only_candidates_inside_them():
    lan = PeerAddresses.of(["10.0.0.0/8", "fd00::/8"])
    assert lan.allows("candidate:1 1 udp 1 10.9.8.7 50000 typ host")
    assert lan.allows("candidate:1 1 udp 1 fd00::9 50000 typ host")
    assert not lan.allows("candidate:1 1 udp 1 198.51.100.7 50000 typ srflx raddr 0.0.0.0 rport 0")
    assert not lan.allows("candidate:1 1 udp 1 abc.local 50000 typ host")  # cannot tell where a name points
    with pytest.raises(ValueError, match="--peer-network"):
        PeerAddresses.of(["10.0.0.0/33"])
