"""The gossip endpoint: one UDP socket on the node's port, one msgpack message per datagram.

Receiving: a datagram that is not one msgpack value holding a registered message is dropped and
counted (``udp_dropped``), never raised — gossip is best effort and anyone can send us bytes.

Sending: addresses are ``host:port``. IP literals go out at once; host names (as in Docker
Compose, ``node2:7000``) are resolved without blocking the loop, cached for ``RESOLVE_TTL_S`` and
re-resolved in the background, so a container that comes back with a new IP is found again. The
few datagrams sent while a name is first resolved wait in a short queue.

Datagrams leave from the bound socket, so a peer sees our node port as the source port. The
source *host* may still differ from the address we advertise (a name versus an IP), so the core
should identify peers by the names inside messages, not by ``Datagram.src``.

With a cluster secret (``auth``, a ``ring.net.auth.GossipAuth``) every datagram sent is sealed
(time, counter, MAC) and every datagram received is opened before it is decoded: one that is
unsigned, fails its MAC, is stamped too far from our clock or was seen before is dropped and
counted (``udp_refused_unsigned``, ``udp_refused_bad_mac``, ``udp_refused_stale``,
``udp_refused_replay``), and logged at most once a minute per source address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from typing import Any, Protocol, cast

from ring.core import messages
from ring.logs import ev
from ring.net.auth import AuthError, GossipAuth, RefusalLog
from ring.net.codec import format_address, parse_address, unpack
from ring.net.tcp import refusal_due

log = logging.getLogger("ringd")

RESOLVE_TTL_S = 30.0
MAX_WAITING_PER_NAME = 32
MAX_DATAGRAM_BYTES = 65507


class GossipSink(Protocol):
    def datagram(self, src: str, msg: Any) -> None: ...

    def count(self, counter: str, n: int = 1) -> None: ...


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class GossipEndpoint(asyncio.DatagramProtocol):
    def __init__(
        self,
        sink: GossipSink,
        auth: GossipAuth | None = None,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.sink = sink
        self.auth = auth
        self.refusals = refusals or RefusalLog()
        self.transport: asyncio.DatagramTransport | None = None
        self.family = socket.AF_INET
        self._resolved: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._waiting: dict[str, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.family = sock.family

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.auth is not None:
            try:
                data = self.auth.open(data)
            except AuthError as exc:
                self.sink.count(f"udp_refused_{exc.reason}")
                source = str(addr[0])
                more = refusal_due(self.refusals, "udp " + source)
                if more is not None:
                    log.warning(
                        "refused a gossip datagram from %s: %s%s",
                        format_address(addr[0], addr[1]),
                        exc,
                        f" ({more} more refused from {source} since the last such line)"
                        if more
                        else "",
                        extra=ev("gossip_refused", source=source, reason=exc.reason, more=more),
                    )
                return
        try:
            msg = messages.from_wire(unpack(data))
        except Exception:
            self.sink.count("udp_dropped")
            return
        self.sink.count("udp_received")
        self.sink.datagram(format_address(addr[0], addr[1]), msg)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (a peer's port closed) arrive here; gossip timeouts handle the peer.
        self.sink.count("udp_errors")

    def send(self, address: str, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.auth is not None:
            data = self.auth.seal(data)
        if len(data) > MAX_DATAGRAM_BYTES:
            self.sink.count("udp_oversize")
            log.warning(
                "gossip datagram of %d bytes to %s not sent: too large",
                len(data),
                address,
                extra=ev("gossip_oversize", bytes=len(data), address=address),
            )
            return
        entry = self._resolved.get(address)
        if entry is not None:
            target, expires = entry
            if expires < time.monotonic() and address not in self._waiting:
                self._resolve(address, [])  # refresh in the background, keep using the old IP
            self._sendto(data, target)
            return
        try:
            host, port = parse_address(address)
        except ValueError:
            self.sink.count("udp_bad_address")
            return
        if _is_ip(host):
            self._resolved[address] = ((host, port), float("inf"))
            self._sendto(data, (host, port))
            return
        waiting = self._waiting.get(address)
        if waiting is not None:
            if len(waiting) < MAX_WAITING_PER_NAME:
                waiting.append(data)
            return
        self._resolve(address, [data])

    def _sendto(self, data: bytes, target: tuple[Any, ...]) -> None:
        assert self.transport is not None
        try:
            self.transport.sendto(data, target)
            self.sink.count("udp_sent")
        except OSError:
            self.sink.count("udp_errors")

    def _resolve(self, address: str, waiting: list[bytes]) -> None:
        self._waiting[address] = waiting
        task = asyncio.get_running_loop().create_task(self._lookup(address))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _lookup(self, address: str) -> None:
        host, port = parse_address(address)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, family=self.family, type=socket.SOCK_DGRAM
            )
            target: tuple[Any, ...] | None = infos[0][4] if infos else None
        except OSError as exc:
            log.debug(
                "cannot resolve %s: %s", address, exc, extra=ev("unresolved", address=address)
            )
            target = None
        waiting = self._waiting.pop(address, [])
        if target is None:
            self.sink.count("udp_unresolved", max(1, len(waiting)))
            return
        self._resolved[address] = (target, time.monotonic() + RESOLVE_TTL_S)
        for data in waiting:
            self._sendto(data, target)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.transport is not None:
            self.transport.close()
