"""A STUN server on 127.0.0.1 that answers Binding requests (RFC 5389) with the sender's address, and records
who asked: what a test hands the page as its `--ice-server`, to see that the browser really used it."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

from aioice import stun


class StunServer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = stun.parse_message(data)
        except ValueError:
            return
        if request.message_method != stun.Method.BINDING or request.message_class != stun.Class.REQUEST:
            return
        self.asked.append(addr)
        response = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                                transaction_id=request.transaction_id)
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        response.add_fingerprint()
        self.transport.sendto(bytes(response), addr)


@asynccontextmanager
async def stun_server() -> AsyncIterator[tuple[str, StunServer]]:
    """Yields (stun:127.0.0.1:PORT, the server)."""
    transport, server = await asyncio.get_running_loop().create_datagram_endpoint(StunServer, local_addr=("127.0.0.1", 0))
    try:
        yield f"stun:127.0.0.1:{transport.get_extra_info('sockname')[1]}", server
    finally:
        transport.close()
