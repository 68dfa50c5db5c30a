"""Outbound links to peers: one per peer name, connected lazily, reconnected with backoff.

A ``Send`` for a peer with no link starts a connection and queues the frame; frames wait until
the peer's hello answer arrives. When the connection fails, the queued frames are dropped and
counted and the peer enters a backoff (100 ms doubling to 1 s, with jitter) during which frames
for it are dropped at once rather than queued: the core's timeouts see it as message loss, which
is what it is. A peer seen at a new address gets a fresh link to that address.

Under TLS (``dispatcher.security.client_ssl``) a link checks the peer's certificate against the
cluster's CA and the host of the peer's address, and shows this node's own certificate. A link
that fails for the cluster secret or a certificate is logged as a warning (at most once until
it works again), since retrying will not fix it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from ring.logs import ev
from ring.net.codec import parse_address
from ring.net.tcp import Dispatcher, PeerLink

log = logging.getLogger("ringd")

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 1.0
CONNECT_TIMEOUT_S = 2.0


class _Backoff:
    __slots__ = ("failures", "retry_at")

    def __init__(self) -> None:
        self.failures = 0
        self.retry_at = 0.0


class PeerPool:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, dispatcher: Dispatcher, queue_limit: int
    ) -> None:
        self.loop = loop
        self.dispatcher = dispatcher
        self.queue_limit = queue_limit
        self.links: dict[str, PeerLink] = {}
        self.backoff: dict[str, _Backoff] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self.closing = False

    def send(self, dest: str, address: str, frame: bytes) -> None:
        link = self.links.get(dest)
        if link is not None and link.address != address:
            log.info(
                "peer %s moved from %s to %s",
                dest,
                link.address,
                address,
                extra=ev("peer_moved", peer=dest, old=link.address, new=address),
            )
            link.close()
            link = None
        if link is None or link.closed:
            link = self._connect(dest, address)
            if link is None:
                self.dispatcher.count("peer_frames_dropped")
                return
        if not link.send(frame):
            self.dispatcher.count("peer_frames_dropped")

    def peer_is_back(self, dest: str) -> None:
        """The peer just connected to us: whatever made our link to it fail is over, so the
        next frame for it connects at once instead of being dropped until the backoff ends."""
        self.backoff.pop(dest, None)

    def _connect(self, dest: str, address: str) -> PeerLink | None:
        if self.closing:
            return None
        backoff = self.backoff.get(dest)
        if backoff is not None and time.monotonic() < backoff.retry_at:
            return None
        link = PeerLink(
            self.dispatcher, dest, address, self.queue_limit, self.link_ready, self.link_closed
        )
        self.links[dest] = link
        task = self.loop.create_task(self._open(link))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return link

    async def _open(self, link: PeerLink) -> None:
        security = getattr(self.dispatcher, "security", None)
        tls = security.client_ssl if security is not None else None
        try:
            host, port = parse_address(link.address)
            connecting = (
                self.loop.create_connection(lambda: link, host, port)
                if tls is None
                else self.loop.create_connection(
                    lambda: link,
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host,
                    ssl_handshake_timeout=CONNECT_TIMEOUT_S,
                )
            )
            await asyncio.wait_for(connecting, CONNECT_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            link.failure = str(exc) or type(exc).__name__
            link.closed = True
            self.link_closed(link)

    def link_closed(self, link: PeerLink) -> None:
        """Called when a link's connection ends (or never started)."""
        if link.pending:
            self.dispatcher.count("peer_frames_dropped", len(link.pending))
            link.pending = []
        if self.closing or self.links.get(link.dest) is not link:
            return  # already replaced (the peer moved) or we are shutting down
        del self.links[link.dest]
        backoff = self.backoff.setdefault(link.dest, _Backoff())
        if link.ready and link.failure is None:
            # A link that worked and then closed (the peer restarted): reconnect at once.
            backoff.failures = 0
            backoff.retry_at = 0.0
            log.info(
                "link to peer %s at %s closed",
                link.dest,
                link.address,
                extra=ev("peer_link_closed", peer=link.dest, address=link.address),
            )
            return
        backoff.failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (backoff.failures - 1))
        delay *= 0.5 + self._rng.random() / 2
        backoff.retry_at = time.monotonic() + delay
        self.dispatcher.count("peer_connect_failures")
        level = logging.INFO if backoff.failures == 1 else logging.DEBUG
        failure = link.failure or ""
        if backoff.failures == 1 and (
            "authentication failed" in failure or "certificate" in failure.lower()
        ):
            level = logging.WARNING
        log.log(
            level,
            "peer %s at %s unreachable (%s); retrying after %d ms",
            link.dest,
            link.address,
            link.failure or "connection closed",
            delay * 1000,
            extra=ev(
                "peer_unreachable",
                peer=link.dest,
                address=link.address,
                error=link.failure or "connection closed",
                retry_ms=int(delay * 1000),
            ),
        )

    def link_ready(self, link: PeerLink) -> None:
        backoff = self.backoff.pop(link.dest, None)
        if backoff is not None and backoff.failures:
            log.info(
                "peer %s at %s reachable again",
                link.dest,
                link.address,
                extra=ev("peer_reachable", peer=link.dest, address=link.address),
            )

    def write_buffer_size(self) -> int:
        return sum(
            link.transport.get_write_buffer_size()
            for link in self.links.values()
            if link.transport is not None and not link.closed
        )

    async def close(self) -> None:
        self.closing = True
        for link in list(self.links.values()):
            link.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
