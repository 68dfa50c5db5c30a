"""Prometheus metrics of a node: plain counters on the hot path, exposition at scrape time.

``ringd --metrics HOST:PORT`` serves ``GET /metrics`` in the Prometheus text format. Nothing
on a request's path touches ``prometheus_client`` (whose ``Counter.inc`` and
``Histogram.observe`` take a lock): the runtime keeps plain ints on the loop thread —
:class:`RequestStats` counts each client request by op and result and drops its latency into a
fixed bucket array (one ``bisect`` over a dozen ints), and the core and the shell keep the
counters ``ringctl status`` shows. At scrape time :class:`NodeCollector` reads all of that and
builds ``prometheus_client`` metric families, rendered by ``generate_latest`` on a private
``CollectorRegistry``. :class:`MetricsServer` is a small asyncio HTTP server on the node's own
event loop, so the collector reads the node's state on the thread that changes it.

Every name is prefixed ``ringkv_``; the list is in the README ("Monitoring"). Label values are
bounded: an op a client made up counts as ``other``, an error kind the node does not know as
``error``; member and peer names come from the cluster's own membership.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ring.core import messages as m
from ring.logs import ev

log = logging.getLogger("ringd")

# Client requests: 100 us to 10 s. Replica handling (on the loop, without the commit): 5 us up.
CLIENT_BOUNDS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
REPLICA_BOUNDS_S = (
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1,
)  # fmt: skip

CLIENT_OPS = frozenset(
    {"get", "getv", "put", "del", "scan", "absorb", "records", "status", "ring", "leave",
     "remove", "locate"}
)  # fmt: skip
RESULTS = frozenset(
    {"quorum", "invalid", "unavailable", "timeout", "internal", "too_large", "corrupt"}
)
# The peer messages a node serves as a replica, by the op they stand for.
REPLICA_OPS: dict[type[Any], str] = {
    m.ReplicaPut: "put",
    m.ReplicaGet: "get",
    m.ScanRequest: "scan",
    m.Forward: "forward",
    m.HandoffRequest: "handoff",
    m.AaePush: "aae_push",
}
MEMBER_STATES = ("joining", "up", "suspect", "down", "left")
# The refusal counters the node knows (``ring.net.tcp``, ``ring.net.udp``), exported from the start
# as ``ringkv_refused_total{reason=...}`` series at 0; any other ``*refused*``, ``*rejected*`` or
# ``auth_failed_*`` counter appears once it was counted.
KNOWN_REFUSALS = (
    "replica_refused", "hints_refused",
    "auth_failed_no_secret", "auth_failed_abandoned", "auth_failed_bad_proof",
    "auth_failed_timeout", "auth_failed_bad_record", "auth_failed_peer_proof",
    "auth_failed_peer_tampered",
    "auth_failed_no_certificate",
    "udp_refused_unsigned", "udp_refused_bad_mac", "udp_refused_stale", "udp_refused_replay",
    "udp_refused_own",
)  # fmt: skip
# Gauges the runtime's ``stats()`` mixes in with its counters.
RUNTIME_GAUGES = {
    "client_connections": "Client connections open.",
    "peer_links": "Outbound links to peers open.",
    "requests_in_flight": "Client requests received and not answered yet.",
}


class Latencies:
    """One histogram as plain ints: a count per bucket (the last for +Inf) and the sum in ns."""

    __slots__ = ("bounds_ns", "counts", "sum_ns")

    def __init__(self, bounds_ns: list[int]) -> None:
        self.bounds_ns = bounds_ns
        self.counts = [0] * (len(bounds_ns) + 1)
        self.sum_ns = 0

    def observe(self, elapsed_ns: int) -> None:
        self.counts[bisect_left(self.bounds_ns, elapsed_ns)] += 1
        self.sum_ns += elapsed_ns


class RequestStats:
    """What the runtime counts per request when metrics are on, on the loop thread only.

    ``client(op, error, started_ns)``: a client request answered (``error`` None for success);
    ``replica(op, started_ns)``: a replica request handled. Both are a few dict operations and
    a ``bisect``: no lock, no allocation once each (op, result) was seen."""

    def __init__(self, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.clock_ns = clock_ns
        self.replica_ops = REPLICA_OPS  # the runtime times these peer messages
        self.requests: dict[tuple[str, str], int] = {}
        self.latency: dict[str, Latencies] = {}
        self.replica_latency: dict[str, Latencies] = {}
        self._client_bounds = [round(b * 1e9) for b in CLIENT_BOUNDS_S]
        self._replica_bounds = [round(b * 1e9) for b in REPLICA_BOUNDS_S]

    def client(self, op: str, error: str | None, started_ns: int) -> None:
        elapsed = self.clock_ns() - started_ns
        if op not in CLIENT_OPS:
            op = "other"
        result = "ok" if error is None else error if error in RESULTS else "error"
        key = (op, result)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        hist = self.latency.get(op)
        if hist is None:
            hist = self.latency[op] = Latencies(self._client_bounds)
        hist.counts[bisect_left(hist.bounds_ns, elapsed)] += 1  # Latencies.observe, inlined
        hist.sum_ns += elapsed

    def replica(self, op: str, started_ns: int) -> None:
        elapsed = self.clock_ns() - started_ns
        hist = self.replica_latency.get(op)
        if hist is None:
            hist = self.replica_latency[op] = Latencies(self._replica_bounds)
        hist.counts[bisect_left(hist.bounds_ns, elapsed)] += 1
        hist.sum_ns += elapsed


def _histogram(name: str, doc: str, hists: dict[str, Latencies], bounds: tuple[float, ...]) -> Any:
    family = HistogramMetricFamily(name, doc, labels=["op"])
    for op, hist in sorted(hists.items()):
        cumulative, buckets = 0, []
        for bound, count in zip((*bounds, float("inf")), hist.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric([op], buckets, hist.sum_ns / 1e9)
    return family


class NodeCollector(Collector):
    """Builds every ``ringkv_`` metric family from the node's state at scrape time.

    ``runtime`` is the ``ring.net.runtime.Runtime`` (its ``stats()``, its ``requests`` and its
    core's ``status()``); ``storage_property`` reads an integer RocksDB property (or None)."""

    def __init__(
        self,
        runtime: Any,
        *,
        cluster: str,
        storage_property: Callable[[str], int | None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.cluster = cluster
        self.storage_property = storage_property

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        stats: dict[str, int] = runtime.stats()
        core = runtime.core
        status: dict[str, Any] | None = None
        if core is not None and hasattr(core, "status"):
            status = core.status(runtime.clock())
        yield from self._info(runtime, status)
        yield from self._requests(runtime.requests, stats)
        yield from self._named_counters(stats)
        yield from self._members(status)
        yield from self._progress(status)
        yield from self._storage()

    def _info(self, runtime: Any, status: dict[str, Any] | None) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "ringkv_node_info",
            "This node's name and cluster (always 1).",
            labels=["node", "cluster"],
        )
        info.add_metric([runtime.name, self.cluster], 1)
        yield info
        serving = 1 if status is not None and status.get("serving") else 0
        yield GaugeMetricFamily(
            "ringkv_serving", "1 once the node serves client reads and writes, else 0.", serving
        )

    def _requests(self, requests: RequestStats | None, stats: dict[str, int]) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "ringkv_requests",
            "Client requests this node answered (those it coordinated, and writes it forwarded to "
            "a replica), by op and result: ok, or the error kind (quorum, invalid, unavailable, "
            "timeout, internal, too_large, corrupt; error for any other).",
            labels=["op", "result"],
        )
        quorum = invalid = 0
        if requests is not None:
            for (op, result), n in sorted(requests.requests.items()):
                total.add_metric([op, result], n)
                quorum += n if result == "quorum" else 0
                invalid += n if result == "invalid" else 0
        yield total
        yield CounterMetricFamily(
            "ringkv_quorum_errors",
            "Client requests answered with a quorum error (fewer replicas answered than R or W).",
            quorum,
        )
        if requests is not None:
            yield _histogram(
                "ringkv_request_seconds",
                "Client request latency by op, from the request's arrival to its answer being "
                "queued on the connection (the group commit of the loop iteration and the socket "
                "write that follow are not included).",
                requests.latency,
                CLIENT_BOUNDS_S,
            )
            replica = CounterMetricFamily(
                "ringkv_replica_requests",
                "Requests this node served as a replica, by op (put includes hints, read repairs "
                "and hint deliveries; forward: writes passed to it to coordinate).",
                labels=["op"],
            )
            for op, hist in sorted(requests.replica_latency.items()):
                replica.add_metric([op], sum(hist.counts))
            yield replica
            yield _histogram(
                "ringkv_replica_request_seconds",
                "Time the node spent handling a replica request on its event loop (the group "
                "commit and the socket write of the answer not included).",
                requests.replica_latency,
                REPLICA_BOUNDS_S,
            )
        malformed = CounterMetricFamily(
            "ringkv_malformed_input",
            "Input that did not parse or was not allowed, by kind: tcp (a broken frame or hello: "
            "the connection was answered with an error and closed), udp (a gossip datagram that "
            "does not decode, dropped), request (a client request answered 'invalid').",
            labels=["kind"],
        )
        malformed.add_metric(["tcp"], stats.get("protocol_errors", 0))
        malformed.add_metric(["udp"], stats.get("udp_dropped", 0))
        malformed.add_metric(["request"], invalid)
        yield malformed

    def _named_counters(self, stats: dict[str, int]) -> Iterator[Metric]:
        named = (
            ("ringkv_read_repairs", "read_repairs", "Read repairs this node sent."),
            ("ringkv_hints_stored", "hints_stored", "Hints this node stored for other nodes."),
            ("ringkv_hints_delivered", "hints_delivered", "Hints delivered to their target."),
            ("ringkv_forwards", "forwards", "Client writes forwarded to a replica of the key."),
            (
                "ringkv_corrupt_records",
                "corrupt_records",
                "Stored records that did not decode (counted as no answer, then repaired).",
            ),
            ("ringkv_errors", "errors", "Internal errors (bugs): one operation failed each."),
        )
        for name, key, doc in named:
            yield CounterMetricFamily(name, doc, stats.get(key, 0))
        gossip = CounterMetricFamily(
            "ringkv_gossip_messages",
            "Gossip datagrams, by direction (in, out).",
            labels=["direction"],
        )
        gossip.add_metric(["in"], stats.get("udp_received", 0))
        gossip.add_metric(["out"], stats.get("udp_sent", 0))
        yield gossip
        refused = CounterMetricFamily(
            "ringkv_refused",
            "Input refused, by reason: every node counter whose name has 'refused' or 'rejected' "
            "in it or starts with 'auth_failed_' (replica_refused: a replicated record that does "
            "not decode; hints_refused: a hint its target refused; auth_failed_*: connections "
            "that did not prove the cluster secret, by why; udp_refused_*: gossip datagrams "
            "refused, by why).",
            labels=["reason"],
        )
        for key in KNOWN_REFUSALS:  # at 0 from the start, so that rate() sees the first one
            refused.add_metric([key], stats.get(key, 0))
        for key, value in sorted(stats.items()):
            if key not in KNOWN_REFUSALS and _refusal(key):
                refused.add_metric([key], value)
        yield refused
        events = CounterMetricFamily(
            "ringkv_events",
            "Every counter the node keeps (what 'ringctl status -o json' shows under counters), "
            "by name.",
            labels=["event"],
        )
        for key, value in sorted(stats.items()):
            if key not in RUNTIME_GAUGES and isinstance(value, int):
                events.add_metric([key], value)
        yield events
        for key, doc in RUNTIME_GAUGES.items():
            yield GaugeMetricFamily(f"ringkv_{key}", doc, stats.get(key, 0))

    def _members(self, status: dict[str, Any] | None) -> Iterator[Metric]:
        members = status.get("members", []) if status is not None else []
        by_state = dict.fromkeys(MEMBER_STATES, 0)
        each = GaugeMetricFamily(
            "ringkv_member_state",
            "1 for each member, labelled with its state as this node sees it.",
            labels=["member", "state"],
        )
        parts = GaugeMetricFamily(
            "ringkv_member_partitions",
            "Partitions (replicas) each member owns in this node's ownership table.",
            labels=["member"],
        )
        for x in members:
            state = str(x.get("state"))
            by_state[state] = by_state.get(state, 0) + 1
            each.add_metric([str(x.get("name")), state], 1)
            parts.add_metric([str(x.get("name"))], int(x.get("partitions") or 0))
        counts = GaugeMetricFamily(
            "ringkv_members",
            "Members by state (joining, up, suspect, down, left) as this node sees them.",
            labels=["state"],
        )
        for state, n in by_state.items():
            counts.add_metric([state], n)
        yield counts
        yield each
        yield parts
        hints: dict[str, int] = status.get("hints", {}) if status is not None else {}
        yield GaugeMetricFamily(
            "ringkv_hints_pending", "Hints this node keeps, not delivered yet.", sum(hints.values())
        )
        by_target = GaugeMetricFamily(
            "ringkv_hints_pending_by_target",
            "Hints this node keeps, by the member they are for.",
            labels=["target"],
        )
        for target, n in sorted(hints.items()):
            by_target.add_metric([target], n)
        yield by_target

    def _progress(self, status: dict[str, Any] | None) -> Iterator[Metric]:
        if status is None:
            return
        yield GaugeMetricFamily(
            "ringkv_ring_epoch", "Epoch of the ownership table this node has.", status["epoch"]
        )
        yield GaugeMetricFamily(
            "ringkv_transfers_pending",
            "Partition transfers not finished (copied by their new owners and deleted by the old "
            "holder); 0 once the ring has settled.",
            status["transfers_pending"],
        )
        handoff = status.get("handoff", {})
        for key, doc in (
            ("received_records", "Records received by partition transfers into this node."),
            ("received_bytes", "Bytes received by partition transfers into this node."),
            ("sent_bytes", "Bytes sent by partition transfers (and anti-entropy pulls) from here."),
            ("deleted_records", "Records deleted by cleanups of partitions that moved away."),
            ("refused_records", "Transferred records that did not decode (skipped)."),
        ):
            yield CounterMetricFamily(f"ringkv_handoff_{key}", doc, handoff.get(key, 0))
        yield GaugeMetricFamily(
            "ringkv_handoff_streams", "Transfers into this node running.", handoff.get("streams", 0)
        )
        aae = status.get("aae", {})
        for key, doc in (
            ("exchanges", "Anti-entropy exchanges this node started."),
            ("keys_repaired", "Keys anti-entropy repaired on this node."),
            ("tombstones_reaped", "Tombstones reaped (removed from disk) by this node."),
            ("segments_differing", "Tree segments found differing in exchanges."),
            ("pulled_records", "Records pulled from co-replicas by anti-entropy."),
            ("pushed_records", "Records pushed to co-replicas by anti-entropy."),
        ):
            yield CounterMetricFamily(f"ringkv_aae_{key}", doc, aae.get(key, 0))
        yield GaugeMetricFamily(
            "ringkv_aae_last_sweep_seconds",
            "Seconds since every partition this node owns was last compared with each co-replica.",
            float(aae.get("last_sweep_s") or 0.0),
        )
        yield GaugeMetricFamily(
            "ringkv_aae_trees_ready",
            "1 once the anti-entropy trees are built from disk.",
            1 if aae.get("trees_ready") else 0,
        )

    def _storage(self) -> Iterator[Metric]:
        read = self.storage_property
        if read is None:
            return
        sst = read("rocksdb.total-sst-files-size")
        memtables = read("rocksdb.cur-size-all-mem-tables")
        keys = read("rocksdb.estimate-num-keys")
        if sst is not None and memtables is not None:
            yield GaugeMetricFamily(
                "ringkv_storage_bytes",
                "Size of the node's RocksDB: SST files plus memtables (RocksDB's "
                "total-sst-files-size and cur-size-all-mem-tables; the write-ahead log is not "
                "included).",
                sst + memtables,
            )
        if keys is not None:
            yield GaugeMetricFamily(
                "ringkv_storage_keys",
                "Keys in the node's RocksDB, an estimate (RocksDB's estimate-num-keys): records "
                "of the partitions it holds, hints and a few of the node's own keys; overwrites "
                "and deletes not yet compacted may be counted twice.",
                keys,
            )


def _refusal(counter: str) -> bool:
    return "refused" in counter or "rejected" in counter or counter.startswith("auth_failed_")


def rocksdb_property(storage: Any) -> Callable[[str], int | None] | None:
    """A reader of integer RocksDB properties (``RocksStorage.property_int``), or None for a
    backend without them."""
    reader: Callable[[str], int | None] | None = getattr(storage, "property_int", None)
    return reader


def registry_for(collector: NodeCollector) -> CollectorRegistry:
    """A private registry: the node's collector and the process's CPU, memory and files."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(namespace="ringkv", registry=registry)
    return registry


# --- the HTTP endpoint ---------------------------------------------------------------------

# The classic text format, which every Prometheus reads (generate_latest writes it, names escaped
# to the legacy character set).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT_S = 2.0  # for the request head: a scraper sends it at once
WRITE_TIMEOUT_S = 10.0  # for the answer to be taken by the scraper
MAX_CONNECTIONS = 16  # open at once; more are answered 503 and closed, and counted
_BUSY = b"busy: too many metrics connections open\n"
REFUSED_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s" % (len(_BUSY), _BUSY)
)


class MetricsServer:
    """``GET /metrics`` (and ``HEAD``) on the node's event loop; one request per connection.

    Anything else gets a plain-text error: 404 for another path, 405 for another method, 400
    for a request that is not HTTP or whose head passes 8 KiB or 2 s. At most
    ``max_connections`` are open at once: one more is answered 503 at once, closed and counted
    (``ringkv_metrics_connections_refused_total``), so that idle or slow connections cannot
    take the node's file descriptors. A failing scrape answers 500 and is logged once; the
    node goes on serving. ``close()`` stops listening and closes the connections open."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_connections: int = MAX_CONNECTIONS,
        head_timeout_s: float = HEAD_TIMEOUT_S,
    ) -> None:
        self.registry = registry
        self.max_connections = max_connections
        self.head_timeout_s = head_timeout_s
        self.server: asyncio.Server | None = None
        self.scrapes = 0
        self.refused = 0
        self._failed_logged = False
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        registry.register(_ServerCollector(self))

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0: any free one); the address bound. Raises OSError."""
        self.server = await asyncio.start_server(
            self._serve, host or None, port, limit=MAX_HEAD_BYTES, reuse_address=True
        )
        sockname = self.server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def close(self) -> None:
        """Stop listening, then close every connection open (their tasks end quietly)."""
        server, self.server = self.server, None
        if server is not None:
            server.close()
        tasks = list(self._connections)
        for task, writer in self._connections.items():
            writer.transport.abort()
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self.server is None or task is None:  # stopping
            writer.transport.abort()
            return
        if len(self._connections) >= self.max_connections:
            self.refused += 1
            writer.write(REFUSED_ANSWER)
            writer.close()
            return
        self._connections[task] = writer
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout_s)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                await self._answer(writer, 400, b"bad request: expected an HTTP request head\n")
                return
            status, body, ctype = self._route(head)
            method = head.split(b" ", 1)[0]
            await self._answer(writer, status, body, ctype, with_body=method != b"HEAD")
        except (ConnectionError, OSError, TimeoutError, asyncio.CancelledError):
            # The scraper went away or was too slow, or the node is stopping (close()).
            pass
        finally:
            del self._connections[task]
            writer.close()

    def _route(self, head: bytes) -> tuple[int, bytes, str]:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, b"bad request: expected 'GET /metrics HTTP/1.1'\n", "text/plain"
        method, target = parts[0], parts[1]
        path = target.split("?", 1)[0]
        if path not in ("/metrics", "/"):
            return 404, b"not found: metrics are at /metrics\n", "text/plain"
        if method not in ("GET", "HEAD"):
            return 405, b"method not allowed: use GET\n", "text/plain"
        if path == "/":
            return 200, b"ringd: metrics are at /metrics\n", "text/plain"
        try:
            body = generate_latest(self.registry)
        except Exception:
            if not self._failed_logged:
                self._failed_logged = True
                log.exception("collecting metrics failed (logged once)", extra=ev("metrics_failed"))
            return 500, b"internal error collecting metrics; see the node log\n", "text/plain"
        self.scrapes += 1
        return 200, body, CONTENT_TYPE

    @staticmethod
    async def _answer(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        ctype: str = "text/plain",
        with_body: bool = True,
    ) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        head = (
            f"HTTP/1.1 {status} {reason.get(status, 'Internal Server Error')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
            + ("Allow: GET, HEAD\r\n" if status == 405 else "")
            + "\r\n"
        )
        writer.write(head.encode("latin-1") + (body if with_body else b""))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)


class _ServerCollector(Collector):
    """The metrics endpoint's own figures."""

    def __init__(self, server: MetricsServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "ringkv_metrics_connections_refused",
            f"Connections to the metrics endpoint refused (answered 503) because "
            f"{self.server.max_connections} were open already.",
            self.server.refused,
        )
        yield GaugeMetricFamily(
            "ringkv_metrics_connections",
            "Connections to the metrics endpoint open (the scrape that reads this included).",
            self.server.open_connections,
        )
