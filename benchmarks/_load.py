"""The closed-loop load generator: a fixed number of requests in flight, put then get.

Two drivers speak to anything that talks the ringkv client protocol (ringd or the echo):

* ``raw`` — a pipelined client of a few dozen lines: ``asyncio.Protocol`` callbacks, each reply
  immediately replaced by the next request, all requests produced in one read joined into one
  write, frames pre-encoded per key (only the request id is packed per request). It spends as
  little as it can of the CPU it shares with the servers, so the servers are what is measured.
* ``aio`` — ``ring.aio`` clients, one per entry node, driven by one task per in-flight slot: what
  an application would write. Useful to see what the public client costs.

Requests are spread over ``connections`` connections, round-robin over the entry addresses; the
key of each request is the next in a fixed cycle over ``keys`` keys, so a put phase of at least
``keys`` requests leaves every key written for the get phase. A warm-up is run before the
measured window and not counted; latency is from the moment a request is queued to the moment
its reply is decoded, as the client sees it.

With ``secret`` (the cluster secret) or ``tls_ca`` in the config, both drivers connect as a
client of a secured cluster must: the raw one runs ``ring.net.auth``'s handshake and seals each
write / opens each read (imported only then, so the echo never needs ringkv), over TLS when
``tls_ca`` is given; the ``aio`` one passes them to ``ring.aio.connect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import msgpack
from _wire import Frames, client_hello, frame, new_packer, parse_address

DRAIN_TIMEOUT_S = 10.0

# Called with (op, True) when a phase's measured window opens and (op, False) when it closes.
PhaseHook = Callable[[str, bool], None]


@dataclass(frozen=True)
class LoadConfig:
    inflight: int = 64
    connections: int = 3
    keys: int = 10_000
    value_bytes: int = 100
    seconds: float = 5.0
    warmup_s: float = 0.5
    client: str = "raw"  # "raw" or "aio"
    smart: bool = True  # aio: route each request to a replica of its key (ring.net.routing)
    secret: bytes | None = None  # the cluster secret, for a cluster that has one
    tls_ca: str | None = None  # connect with TLS, trusting this CA


@dataclass
class PhaseResult:
    """Completed requests in the measured window and their latencies in nanoseconds."""

    op: str
    seconds: float
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    lost: int = 0  # still unanswered DRAIN_TIMEOUT_S after the window closed
    first_error: str | None = None

    @property
    def ops_per_s(self) -> float:
        return len(self.latencies_ns) / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        lat = self.latencies_ns
        if not lat:
            return float("nan")
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6

    def finish(self) -> PhaseResult:
        self.latencies_ns.sort()
        return self


def key_names(keys: int) -> list[bytes]:
    return [b"bench-%08d" % i for i in range(keys)]


def request_tails(op: str, keys: list[bytes], value: bytes) -> list[bytes]:
    """Per key, the encoded ``op, args`` that follow the array header and request id."""
    packer = new_packer()
    if op == "put":
        return [packer.pack(op) + packer.pack({"key": k, "value": value}) for k in keys]
    return [packer.pack(op) + packer.pack({"key": k}) for k in keys]


class Phase:
    """The shared state of one phase: the key cycle, the clock window and the tallies."""

    def __init__(self, op: str, tails: list[bytes], hook: PhaseHook | None = None) -> None:
        self.op = op
        self.hook = hook
        self.tails = tails
        self.next_key = 0
        self.running = True
        self.recording = False
        self.started_ns = 0
        self.stopped_ns = 0
        self.outstanding = 0
        self.latencies: list[int] = []
        self.errors = 0
        self.first_error: str | None = None
        self.drained: asyncio.Future[None] | None = None

    def next_tail(self) -> bytes:
        i = self.next_key
        self.next_key = i + 1 if i + 1 < len(self.tails) else 0
        return self.tails[i]

    def start_recording(self) -> None:
        self.recording = True
        self.started_ns = time.perf_counter_ns()
        if self.hook is not None:
            self.hook(self.op, True)

    def stop(self) -> None:
        self.recording = False
        self.running = False
        self.stopped_ns = time.perf_counter_ns()
        if self.hook is not None:
            self.hook(self.op, False)
        self.check_drained()

    def check_drained(self) -> None:
        drained = self.drained
        if not self.running and self.outstanding == 0 and drained and not drained.done():
            drained.set_result(None)

    def result(self) -> PhaseResult:
        return PhaseResult(
            self.op,
            (self.stopped_ns - self.started_ns) / 1e9,
            self.latencies,
            self.errors,
            self.outstanding,
            self.first_error,
        ).finish()


class RawConnection(asyncio.Protocol):
    """One pipelined connection; request ids are slot numbers, reused once answered."""

    def __init__(self, slots: int, secret: bytes | None = None) -> None:
        self.slots = slots
        self.secret = secret
        self.handshake: Any = None  # ring.net.auth.ClientHandshake, with a secret
        self.session: Any = None  # its ring.net.auth.Session once the node proved itself
        self.sent_ns = [0] * slots
        self.frames = Frames()
        self.transport: asyncio.Transport | None = None
        self.hello: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.phase: Phase | None = None
        # Request ids 0..slots-1 packed once: a frame is length + 0x93 + id + tail.
        self.ids: list[bytes] = [b"\x93" + msgpack.packb(i) for i in range(slots)]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport, so no isinstance check.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hello = client_hello()
        if self.secret is not None:
            from ring.net.auth import ClientHandshake

            self.handshake = ClientHandshake((self.secret,), hello)
            hello = self.handshake.hello
        transport.write(frame(new_packer(), hello))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.hello.done():
            self.hello.set_exception(exc or ConnectionResetError("connection closed"))
        phase = self.phase
        if phase is not None and phase.running:
            phase.first_error = phase.first_error or f"connection lost: {exc}"

    def _request(self, phase: Phase, slot: int) -> bytes:
        body = self.ids[slot] + phase.next_tail()
        self.sent_ns[slot] = time.perf_counter_ns()
        return len(body).to_bytes(4, "big") + body

    def start(self, phase: Phase) -> None:
        self.phase = phase
        assert self.transport is not None
        phase.outstanding += self.slots
        self._write(b"".join(self._request(phase, s) for s in range(self.slots)))

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        session = self.session
        self.transport.write(data if session is None else session.sealer.seal(data))

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            data = self.session.opener.feed(data)
        msgs = self.frames.feed(data)
        phase = self.phase
        if not self.hello.done():
            answer = msgs.pop(0)
            if self.handshake is not None and isinstance(answer, dict):
                proof, self.session = self.handshake.finish(answer)
                assert self.transport is not None
                self.transport.write(frame(new_packer(), proof))
            self.hello.set_result(answer)
        if phase is None:
            return
        now = time.perf_counter_ns()
        out = []
        sent = self.sent_ns
        for slot, error, result in msgs:
            if type(slot) is not int:  # [None, "protocol", why]: the server drops us
                phase.first_error = phase.first_error or f"{error}: {result}"
                phase.errors += 1
                continue
            if error is not None:
                phase.errors += 1
                phase.first_error = phase.first_error or f"{error}: {result}"
            elif phase.recording:
                phase.latencies.append(now - sent[slot])
            if phase.running:
                out.append(self._request(phase, slot))
            else:
                phase.outstanding -= 1
        if out and self.transport is not None:
            self._write(b"".join(out))
        if not phase.running:
            phase.check_drained()


async def run_phase(
    loop: asyncio.AbstractEventLoop,
    phase: Phase,
    starters: list[Callable[[Phase], None]],
    cfg: LoadConfig,
) -> PhaseResult:
    phase.drained = loop.create_future()
    for start in starters:
        start(phase)
    loop.call_later(cfg.warmup_s, phase.start_recording)
    loop.call_later(cfg.warmup_s + cfg.seconds, phase.stop)
    with contextlib.suppress(TimeoutError):
        timeout_s = cfg.warmup_s + cfg.seconds + DRAIN_TIMEOUT_S
        await asyncio.wait_for(asyncio.shield(phase.drained), timeout_s)
    return phase.result()


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_raw(
    addresses: list[str], cfg: LoadConfig, hook: PhaseHook | None = None
) -> tuple[PhaseResult, PhaseResult]:
    loop = asyncio.get_running_loop()
    keys = key_names(cfg.keys)
    value = bytes(range(256)) * (cfg.value_bytes // 256 + 1)
    value = value[: cfg.value_bytes]
    conns: list[RawConnection] = []
    tls = None
    if cfg.tls_ca is not None:
        import ssl

        tls = ssl.create_default_context(cafile=cfg.tls_ca)
    try:
        for i, slots in enumerate(split(cfg.inflight, cfg.connections)):
            if slots == 0:
                continue
            host, port = parse_address(addresses[i % len(addresses)])
            protocol = partial(RawConnection, slots, cfg.secret)
            if tls is None:
                _, conn = await loop.create_connection(protocol, host, port)
            else:
                _, conn = await loop.create_connection(
                    protocol, host, port, ssl=tls, server_hostname=host
                )
            conns.append(conn)
            hello = await asyncio.wait_for(conn.hello, 5)
            if not isinstance(hello, dict) or "hello" not in hello:
                raise RuntimeError(f"{host}:{port} answered the hello with {hello!r}")
        results = []
        for op in ("put", "get"):
            phase = Phase(op, request_tails(op, keys, value), hook)
            results.append(await run_phase(loop, phase, [c.start for c in conns], cfg))
        return results[0], results[1]
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()


async def run_aio(
    addresses: list[str], cfg: LoadConfig, hook: PhaseHook | None = None
) -> tuple[PhaseResult, PhaseResult]:
    import ring.aio  # imported here so the raw driver and the echo never need ringkv

    keys = key_names(cfg.keys)
    value = (bytes(range(256)) * (cfg.value_bytes // 256 + 1))[: cfg.value_bytes]
    clients = []
    for i in range(min(cfg.connections, cfg.inflight)):
        rotated = addresses[i % len(addresses) :] + addresses[: i % len(addresses)]
        clients.append(
            await ring.aio.connect(
                ",".join(rotated), smart=cfg.smart, secret=cfg.secret, tls_ca=cfg.tls_ca
            )
        )
    results = []
    try:
        for op in ("put", "get"):
            phase = Phase(op, [], hook)

            async def worker(client: Any, phase: Phase = phase, op: str = op) -> None:
                call = client.put if op == "put" else client.get
                while phase.running:
                    key = keys[phase.next_key % len(keys)]
                    phase.next_key += 1
                    t0 = time.perf_counter_ns()
                    try:
                        await (call(key, value) if op == "put" else call(key))
                    except Exception as exc:
                        phase.errors += 1
                        phase.first_error = phase.first_error or repr(exc)
                        continue
                    if phase.recording:
                        phase.latencies.append(time.perf_counter_ns() - t0)

            loop = asyncio.get_running_loop()
            loop.call_later(cfg.warmup_s, phase.start_recording)
            loop.call_later(cfg.warmup_s + cfg.seconds, phase.stop)
            await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(cfg.inflight)))
            results.append(phase.result())
        return results[0], results[1]
    finally:
        for client in clients:
            await client.close()


async def run_load(
    addresses: list[str], cfg: LoadConfig, hook: PhaseHook | None = None
) -> tuple[PhaseResult, PhaseResult]:
    """Put phase then get phase against ``addresses``; returns their results."""
    if cfg.client == "aio":
        return await run_aio(addresses, cfg, hook)
    return await run_raw(addresses, cfg, hook)
