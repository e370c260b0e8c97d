"""A UDP relay on 127.0.0.1 that stands between a WebRTC client and the server and damages the traffic:
random loss, per-packet delay (jitter, so packets may overtake each other) and a blackhole that drops
everything. The fault tests run real ICE, DTLS, RTP and SCTP through it; nothing is mocked.

The relay holds two sockets: `client_side`, which the client takes for the server, and `server_side`, which
the server takes for the client. The client rewrites both ends' ICE candidates to these addresses (its own
in the offer, the server's in the answer), so every packet of the session, checks included, crosses the
relay: rewriting only one side would let the server's checks reach the client directly and be nominated.
Each direction draws from its own seeded `random.Random`, so which packets of a direction are lost and how
long each is held does not depend on how the two directions interleave: a run's fault pattern is reproducible.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

Address = tuple[str, int]
HOST = "127.0.0.1"


@dataclass
class Link:
    """What one direction of the relay did: packets forwarded and dropped, how long each forwarded packet
    was held (seconds, measured at delivery), and how many arrived behind a packet that came in later."""

    forwarded: int = 0
    dropped: int = 0
    reordered: int = 0
    delays: list[float] = field(default_factory=list)
    _arrivals: int = field(default=0, repr=False)
    _newest_delivered: int = field(default=-1, repr=False)

    @property
    def loss(self) -> float:
        seen = self.forwarded + self.dropped
        return self.dropped / seen if seen else 0.0


class _Side(asyncio.DatagramProtocol):
    """One of the relay's sockets: what arrives on it goes out of the other one, with its direction's faults."""

    def __init__(self, relay: UdpRelay, link: Link, seed: int) -> None:
        self.relay, self.link, self.random = relay, link, random.Random(seed)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay._arrived(self, data)


class UdpRelay:
    """Forwards datagrams between one client and one server with `loss` (probability a packet is dropped),
    `jitter` (each packet is held uniform(low, high) seconds) and `blackhole` (drop all), all settable while
    it runs. `client` and `server` are the real addresses to deliver to; a packet for an address not yet
    known is ignored. Open it with `await UdpRelay.open(...)`, end it with `close()`."""

    def __init__(self, seed: int = 0) -> None:
        self.loss = 0.0
        self.jitter: tuple[float, float] = (0.0, 0.0)
        self.blackhole = False
        self.client: Address | None = None
        self.server: Address | None = None
        self.upstream, self.downstream = Link(), Link()  # client -> server, server -> client
        self.seed = seed
        self._from_client: _Side | None = None
        self._from_server: _Side | None = None

    @classmethod
    async def open(cls, seed: int = 0) -> UdpRelay:
        relay = cls(seed)
        loop = asyncio.get_running_loop()
        _, relay._from_client = await loop.create_datagram_endpoint(
            lambda: _Side(relay, relay.upstream, 2 * relay.seed), local_addr=(HOST, 0))
        _, relay._from_server = await loop.create_datagram_endpoint(
            lambda: _Side(relay, relay.downstream, 2 * relay.seed + 1), local_addr=(HOST, 0))
        return relay

    @property
    def client_side(self) -> Address:
        """Where the client sends: the server's address as the client is told it."""
        return self._address(self._from_client)

    @property
    def server_side(self) -> Address:
        """Where the server sends: the client's address as the server is told it."""
        return self._address(self._from_server)

    @staticmethod
    def _address(side: _Side | None) -> Address:
        assert side is not None and side.transport is not None, "the relay is not open"
        return side.transport.get_extra_info("sockname")[:2]

    def _arrived(self, side: _Side, data: bytes) -> None:
        upstream = side is self._from_client
        out, to = (self._from_server, self.server) if upstream else (self._from_client, self.client)
        if to is None or out is None or out.transport is None:
            return
        link = side.link
        seq, link._arrivals = link._arrivals, link._arrivals + 1
        if self.blackhole or side.random.random() < self.loss:
            link.dropped += 1
            return
        low, high = self.jitter
        delay = side.random.uniform(low, high) if high > 0 else 0.0
        if delay <= 0:
            self._deliver(out, link, data, to, seq, time.monotonic())
        else:
            asyncio.get_running_loop().call_later(delay, self._deliver, out, link, data, to, seq, time.monotonic())

    def _deliver(self, out: _Side, link: Link, data: bytes, to: Address, seq: int, arrived: float) -> None:
        if out.transport is None or out.transport.is_closing():
            return
        out.transport.sendto(data, to)
        link.forwarded += 1
        link.delays.append(time.monotonic() - arrived)
        if seq < link._newest_delivered:
            link.reordered += 1
        link._newest_delivered = max(link._newest_delivered, seq)

    def close(self) -> None:
        """Close both sockets; what is still in flight is dropped when it falls due."""
        for side in (self._from_client, self._from_server):
            if side is not None and side.transport is not None:
                side.transport.close()
