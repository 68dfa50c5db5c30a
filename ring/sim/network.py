"""The simulated network: node-to-node messages (TCP) and gossip datagrams (UDP).

Every message crosses the network in its wire form, exactly as the real shell sends it:
``messages.to_wire`` then msgpack (``use_bin_type=True``) on the way out, msgpack
(``raw=False``) then ``messages.from_wire`` on the way in. So every delivery gets fresh objects
(tuples become lists), and a message the core cannot encode fails the run loudly.

Faults, all drawn from the run's one ``random.Random``:

* **loss**: a message is dropped with probability ``loss``;
* **delay and reordering**: each copy gets its own latency, uniform in
  ``[latency_min_ms, latency_max_ms]``, and with probability ``spike`` a long delay of up to
  ``spike_max_ms`` (longer than a request timeout), so messages overtake each other;
* **duplication**: with probability ``duplicate`` a message is delivered twice (each copy with
  its own latency). ``Forward`` is never duplicated: a second copy is a second write, i.e. a client
  retry, and the checker models each client operation as one write;
* **partitions**: directed links ``(src, dst)`` can be blocked; a message on a blocked link is
  dropped when sent and when it arrives. A symmetric partition blocks both directions.

The network knows nothing of nodes' lives: the world decides at delivery whether the receiver
still exists (``deliver`` returns nothing either way).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from ring.core import messages as m

_packb = msgpack.Packer(use_bin_type=True).pack


def wire_bytes(msg: Any) -> bytes:
    """A message as the bytes the shell would put in a frame or datagram."""
    data: bytes = _packb(m.to_wire(msg))
    return data


def from_bytes(data: bytes) -> Any:
    """Inverse of :func:`wire_bytes`, with the options of ``ring.net.codec.unpack``."""
    return m.from_wire(msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True))


@dataclass(slots=True)
class NetworkFaults:
    """The fault levels of the network; all zero means a perfect (but not instant) network."""

    loss: float = 0.0
    duplicate: float = 0.0
    spike: float = 0.0
    spike_max_ms: int = 0
    latency_min_ms: int = 1
    latency_max_ms: int = 4


@dataclass(frozen=True, slots=True)
class Packet:
    """One copy of a message in flight. ``src_gen``/``dst_gen`` are the lives (generations) of
    the two nodes when it was sent; the world uses them to drop what a crash broke."""

    tcp: bool
    src: str
    dst: str
    payload: bytes
    src_gen: int
    dst_gen: int
    epoch: int


class Network:
    """Carries packets between nodes through the scheduler, injecting the configured faults."""

    def __init__(
        self,
        schedule: Callable[..., None],
        rng: random.Random,
        deliver: Callable[[Packet], None],
        counters: dict[str, int],
        trace: Any,
    ) -> None:
        self._after = schedule
        self._rng = rng
        self._deliver = deliver
        self.faults = NetworkFaults()
        self.counters = counters
        self._trace = trace  # hashlib object fed with every delivered payload
        self._blocked: set[tuple[str, str]] = set()
        # Packets in flight per epoch; the liveness phase starts a new epoch and waits for the
        # packets of the safety phase (some delayed by spikes) to land before judging the state.
        self._in_flight = [0]

    # --- partitions ------------------------------------------------------------------------------

    def block(self, src: str, dst: str) -> None:
        self._blocked.add((src, dst))

    def blocked(self, src: str, dst: str) -> bool:
        return (src, dst) in self._blocked

    def heal(self) -> None:
        self._blocked.clear()

    def new_epoch(self) -> None:
        self._in_flight.append(0)

    def drained(self) -> bool:
        """No packet sent before the current epoch is still in flight."""
        return not any(self._in_flight[:-1])

    # --- sending ---------------------------------------------------------------------------------

    def send(self, tcp: bool, src: str, dst: str, msg: Any, src_gen: int, dst_gen: int) -> None:
        payload = wire_bytes(msg)
        if (src, dst) in self._blocked:
            self._count("dropped_by_partition")
            return
        f = self.faults
        rng = self._rng
        if f.loss and rng.random() < f.loss:
            self._count("lost")
            return
        copies = 1
        if f.duplicate and not isinstance(msg, m.Forward) and rng.random() < f.duplicate:
            copies = 2
            self._count("duplicated")
        epoch = len(self._in_flight) - 1
        packet = Packet(tcp, src, dst, payload, src_gen, dst_gen, epoch)
        self._in_flight[epoch] += copies
        for _ in range(copies):
            delay = rng.randint(f.latency_min_ms, f.latency_max_ms)
            if f.spike and rng.random() < f.spike:
                delay += rng.randint(1, f.spike_max_ms)
                self._count("delayed")
            self._after(delay, self._arrive, packet)

    def _arrive(self, packet: Packet) -> None:
        self._in_flight[packet.epoch] -= 1
        if (packet.src, packet.dst) in self._blocked:
            self._count("dropped_by_partition")
            return
        self._trace.update(packet.payload)
        self._deliver(packet)

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1


def new_trace() -> Any:
    """The run's trace hash: every delivered payload and every client outcome is fed to it, so
    two runs of one seed are identical exactly when their hashes are."""
    return hashlib.sha256()
