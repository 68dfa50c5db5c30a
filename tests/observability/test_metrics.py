"""``ringd --metrics`` and ``--log-format json`` on real processes.

Three ``ringd`` nodes (N=3 R=2 W=2) run with ``--metrics 127.0.0.1:0`` and JSON logs; each
prints the address it serves metrics on. ``/metrics`` is scraped with urllib and parsed with
``prometheus_client.parser`` (what Prometheus itself would accept): request counters and
histograms move with the requests made, replicas count what they served, a quorum error and
the hints of a stopped node show, member states follow the node that stops and comes back,
bad HTTP and bad protocol input are counted and answered without disturbing anything, and the
Grafana dashboard in ``docs/`` names only metrics a node exposes. At the end every line the
nodes logged is one JSON object with time, level, node, event and fields, and none carries the
distinctive keys and values written. Startup errors (a bad address, a port in use, a bad log
format) exit with the README's codes and say why.

Every process is started on port 0 and stopped by its PID; every wait has a deadline.
"""

from __future__ import annotations

import datetime
import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import ring
from ring.net.auth import AuthenticationFailed
from ring.net.codec import client_hello, encode_frame, new_packer
from ring.net.metrics import KNOWN_REFUSALS
from tests.integration.harness import Cluster, wait_until
from tests.security.secure import SecureCluster, secret_file

pytestmark = pytest.mark.integration

METRICS_LINE = re.compile(r"ringd (\S+) metrics on (\S+)")
SECRET_KEY = "obs-secret-key-5f1c"
SECRET_VALUE = "obs-secret-value-93ab"
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_url(cluster: Cluster, name: str) -> str:
    match = METRICS_LINE.search((cluster.root / f"{name}.out").read_text())
    assert match, f"{name} printed no metrics address"
    return match.group(2)


def scrape(cluster: Cluster, name: str) -> Samples:
    """Every sample of ``name``'s /metrics, by (sample name, labels)."""
    with urllib.request.urlopen(metrics_url(cluster, name), timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def raw_request(address: str, frames: list[bytes], read: bool = True) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for frame in frames:
            sock.sendall(frame)
        out = b""
        while read and (data := sock.recv(65536)):
            out += data
            if len(frames) > 1 and len(out) > 20:  # the hello answer and one reply
                break
        return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    flags = ["--metrics", "127.0.0.1:0", "--log-format", "json", "--request-timeout-ms", "1500"]
    c = Cluster(tmp_path_factory.mktemp("observability"), extra=flags)
    try:
        c.start("a", "b", "c")
        c.converge({"a": "up", "b": "up", "c": "up"})
        yield c
    finally:
        c.close()


def test_request_counters_and_histograms_move_with_requests(cluster: Cluster) -> None:
    before = {n: scrape(cluster, n) for n in ("a", "b")}
    with cluster.client("a") as client:
        for i in range(20):
            client.put(f"{SECRET_KEY}-{i}", f"{SECRET_VALUE}-{i}")
        for i in range(20):
            assert client.get(f"{SECRET_KEY}-{i}") == f"{SECRET_VALUE}-{i}".encode()
    after = {n: scrape(cluster, n) for n in ("a", "b")}
    a0, a1 = before["a"], after["a"]
    for op in ("put", "get"):
        moved = value(a1, "ringkv_requests_total", op=op, result="ok") - value(
            a0, "ringkv_requests_total", op=op, result="ok"
        )
        assert moved == 20, op
        count = value(a1, "ringkv_request_seconds_count", op=op)
        assert count - value(a0, "ringkv_request_seconds_count", op=op) == 20
        assert value(a1, "ringkv_request_seconds_bucket", op=op, le="+Inf") == count
        assert value(a1, "ringkv_request_seconds_sum", op=op) > 0
        buckets = sorted(
            (float(dict(labels)["le"]), v)
            for (name, labels), v in a1.items()
            if name == "ringkv_request_seconds_bucket" and dict(labels)["op"] == op
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    # b holds a replica of every key (N=3 on three nodes): it serves a replica put for each (the
    # last of them may land after the client's answer: W=2).
    b0 = before["b"]

    def b_served_all() -> Samples | None:
        s = scrape(cluster, "b")
        moved = value(s, "ringkv_replica_requests_total", op="put") - value(
            b0, "ringkv_replica_requests_total", op="put"
        )
        return s if moved >= 20 else None

    b1 = wait_until(b_served_all, what="b to serve a replica put of every key")
    served = value(b1, "ringkv_replica_requests_total", op="put")
    assert value(b1, "ringkv_replica_request_seconds_count", op="put") == served
    for node in after.values():
        assert value(node, "ringkv_serving") == 1
        assert value(node, "ringkv_storage_keys") > 0  # RocksDB's estimate
        assert value(node, "ringkv_storage_bytes") > 0
        assert value(node, "ringkv_gossip_messages_total", direction="in") > 0
        assert value(node, "ringkv_gossip_messages_total", direction="out") > 0
        assert value(node, "ringkv_members", state="up") == 3
        assert value(node, "ringkv_process_resident_memory_bytes") > 0
    assert value(a1, "ringkv_node_info", node="a", cluster="ringkv") == 1
    # every plain counter of the node is there too, by name
    assert value(a1, "ringkv_events_total", event="tcp_accepted") >= 1


def test_bad_protocol_input_is_counted_and_answered(cluster: Cluster) -> None:
    address = cluster.addresses["a"]
    before = scrape(cluster, "a")
    hello = encode_frame(new_packer(), client_hello("ringkv"))
    answer = raw_request(address, [hello, encode_frame(new_packer(), [7, "no-such-op", {}])])
    assert b"invalid" in answer and b"unknown operation" in answer
    raw_request(address, [b"\x00\x00\x00\x04\xc1\xc1\xc1\xc1"])  # not a hello: a broken frame
    after = scrape(cluster, "a")
    moved = value(after, "ringkv_requests_total", op="other", result="invalid") - value(
        before, "ringkv_requests_total", op="other", result="invalid"
    )
    assert moved == 1  # a client's made-up op is counted as "other": labels stay bounded
    for kind in ("request", "tcp"):
        diff = value(after, "ringkv_malformed_input_total", kind=kind) - value(
            before, "ringkv_malformed_input_total", kind=kind
        )
        assert diff == 1, kind
    with cluster.client("a") as client:
        client.put("after-garbage", "fine")
        assert client.get("after-garbage") == b"fine"


def test_the_metrics_endpoint_refuses_what_is_not_a_scrape(cluster: Cluster) -> None:
    url = metrics_url(cluster, "a")
    base = url.removesuffix("/metrics")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(base + "/nope", timeout=10)
    with err.value:
        assert err.value.code == 404 and b"/metrics" in err.value.read()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"), timeout=10)
    with err.value:
        assert err.value.code == 405 and err.value.headers["Allow"] == "GET, HEAD"
    host, port = base.removeprefix("http://").rsplit(":", 1)
    for junk in (b"hello there\r\n\r\n", b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 20000):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(junk)
            reply = b""
            while data := sock.recv(65536):
                reply += data
        assert reply.startswith(b"HTTP/1.1 400"), reply[:80]
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10) as head:
        assert head.status == 200 and head.read() == b""
    assert value(scrape(cluster, "a"), "ringkv_serving") == 1  # and it goes on serving


def test_a_stopped_node_shows_in_member_states_quorum_errors_and_hints(cluster: Cluster) -> None:
    before = scrape(cluster, "a")
    assert cluster.stop("c") == 0

    def sees_c_down() -> bool:
        s = scrape(cluster, "a")
        return (
            value(s, "ringkv_member_state", member="c", state="down") == 1
            and value(s, "ringkv_members", state="down") == 1
            and value(s, "ringkv_members", state="up") == 2
        )

    wait_until(sees_c_down, what="a to report c down in its metrics")
    with cluster.client("a") as client:
        with pytest.raises(ring.QuorumError):
            client.put(f"{SECRET_KEY}-strict", SECRET_VALUE, w=3)
        for i in range(10):
            client.put(f"{SECRET_KEY}-while-down-{i}", SECRET_VALUE, w=2)
    during = scrape(cluster, "a")
    assert (
        value(during, "ringkv_quorum_errors_total") - value(before, "ringkv_quorum_errors_total")
        == 1
    )
    assert (
        value(during, "ringkv_requests_total", op="put", result="quorum")
        - value(before, "ringkv_requests_total", op="put", result="quorum")
        == 1
    )
    assert value(during, "ringkv_hints_pending") >= 10
    assert value(during, "ringkv_hints_pending_by_target", target="c") >= 10
    delivered = value(during, "ringkv_hints_delivered_total")
    cluster.restart("c")
    cluster.converge({"a": "up", "b": "up", "c": "up"})

    def hints_delivered() -> bool:
        s = scrape(cluster, "a")
        return (
            value(s, "ringkv_hints_pending") == 0
            and value(s, "ringkv_hints_delivered_total") >= delivered + 10
            and value(s, "ringkv_members", state="up") == 3
        )

    wait_until(hints_delivered, what="a's hints for c to be delivered")
    assert value(scrape(cluster, "c"), "ringkv_member_state", member="c", state="up") == 1


def test_the_dashboard_uses_only_metrics_a_node_exposes(cluster: Cluster) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(exprs) >= 10
    queries = [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = {name for q in exprs + queries for name in re.findall(r"\bringkv_[a-z0-9_]+", q)}
    with cluster.client("b") as client:  # so that b has request histograms to expose
        client.put("dashboard", "1")
        client.get("dashboard")
    exposed = names(scrape(cluster, "b"))
    assert used and not used - exposed, f"the dashboard names unknown metrics: {used - exposed}"


def metrics_socket(cluster: Cluster, name: str, send: bytes = b"") -> socket.socket:
    host, port = metrics_url(cluster, name).removeprefix("http://").split("/")[0].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    if send:
        sock.sendall(send)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """What the node sends until it closes (a reset counts as a close)."""
    out = b""
    try:
        while data := sock.recv(65536):
            out += data
    except ConnectionResetError:
        pass
    return out


def test_metrics_connections_are_capped_and_idle_ones_time_out(cluster: Cluster) -> None:
    before = scrape(cluster, "b")
    assert value(before, "ringkv_metrics_connections_refused_total") == 0
    held = [metrics_socket(cluster, "b", b"GET /metr" if i % 2 else b"") for i in range(16)]
    try:
        with metrics_socket(cluster, "b") as extra:  # the 17th: refused at once, not queued
            assert read_all(extra).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        for sock in held:  # idle and half-sent heads are answered 400 after 2 s, not kept
            sock.settimeout(8)
            assert read_all(sock).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    finally:
        for sock in held:
            sock.close()
    after = scrape(cluster, "b")  # and the endpoint serves again
    assert value(after, "ringkv_metrics_connections_refused_total") == 1
    assert value(after, "ringkv_serving") == 1


def test_every_log_line_is_json_and_no_key_or_value_is_logged(cluster: Cluster) -> None:
    """Last in this module: it stops the nodes (a with idle and half-sent metrics connections
    open: closed by the node as it stops, with no traceback of their tasks)."""
    held = [metrics_socket(cluster, "a", b"GET /metr" if i % 2 else b"") for i in range(4)]
    try:
        wait_until(
            lambda: value(scrape(cluster, "a"), "ringkv_metrics_connections") == 5,
            what="a to hold the 4 metrics connections and the scrape",
        )
        assert cluster.stop("a") == 0, cluster.log("a")
        for sock in held:  # closed by the stop, not answered 400 by the head timeout first
            assert read_all(sock) == b""
    finally:
        for sock in held:
            sock.close()
    for name in sorted(cluster.procs):
        assert cluster.stop(name) == 0, cluster.log(name)
    events = set()
    for name in ("a", "b", "c"):
        text = (cluster.root / f"{name}.log").read_text()
        lines = text.splitlines()
        assert len(lines) > 3
        for line in lines:
            entry = json.loads(line)
            assert set(entry) == {"time", "level", "node", "event", "msg", "fields"}, entry
            when = datetime.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
            assert when.utcoffset() == datetime.timedelta(0)
            assert entry["level"] in ("debug", "info", "warning", "error")
            assert entry["node"] == name and isinstance(entry["fields"], dict)
            assert re.fullmatch(r"[a-z_]+", entry["event"]), entry
            assert entry["event"] != "asyncio" and "traceback" not in entry["fields"], entry
            events.add(entry["event"])
        assert SECRET_KEY not in text and SECRET_VALUE not in text
        assert "obs-secret" not in (cluster.root / f"{name}.out").read_text()
    # the events of what happened above, with their fields
    assert {"serving", "member_state", "listening", "stopped", "metrics_listening"} <= events
    lines = [json.loads(x) for x in (cluster.root / "a.log").read_text().splitlines()]
    down = [x for x in lines if x["event"] == "member_state" and x["fields"]["to"] == "down"]
    assert down and down[0]["fields"]["member"] == "c"
    assert any(x["event"] == "connection_closed" for x in lines)  # the broken frame above


# --- a node with a cluster secret -------------------------------------------------------------


def test_refusals_are_exported_at_0_so_the_first_one_shows(tmp_path: Path) -> None:
    secret = b"5d3b1e6f4a8c2d5b7e1a3c9f0f3c9a1e"
    flags = ["--secret-file", secret_file(tmp_path / "secret", secret), "--metrics", "127.0.0.1:0"]
    node = SecureCluster(tmp_path, secret=secret, n=1, r=1, w=1, extra=flags)
    try:
        node.start("s")
        before = scrape(node, "s")
        for reason in KNOWN_REFUSALS:  # a rate() alert on any of them sees its first increase
            assert (("ringkv_refused_total", frozenset({("reason", reason)}))) in before, reason
            assert value(before, "ringkv_refused_total", reason=reason) == 0, reason
        with pytest.raises(AuthenticationFailed):
            ring.connect(node.addresses["s"], secret=secret[::-1])

        def refused() -> dict[str, float]:
            now = scrape(node, "s")
            return {
                r: v for r in KNOWN_REFUSALS if (v := value(now, "ringkv_refused_total", reason=r))
            }

        counted = wait_until(refused, what="the refused client to be counted")
        assert sum(counted.values()) == 1 and next(iter(counted)).startswith("auth_failed_")
        with node.client("s") as client:  # and the node goes on serving clients with the secret
            client.put("k", "v")
            assert client.get("k") == b"v"
    finally:
        node.close()


# --- startup errors --------------------------------------------------------------------------


def ringd(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """A ringd that must exit by itself (a startup error)."""
    argv = [sys.executable, "-m", "ring.cli.ringd", "--name", "x", "--data", str(tmp_path / "d")]
    argv += ["--listen", "127.0.0.1:0", "--new-cluster", *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_a_bad_metrics_address_or_log_format_is_a_settings_error(tmp_path: Path) -> None:
    done = ringd(tmp_path, "--metrics", "9100")
    assert done.returncode == 2
    assert "metrics address '9100' is not HOST:PORT" in done.stderr
    done = ringd(tmp_path, "--log-format", "xml")
    assert done.returncode == 2 and "log_format must be text or json" in done.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_a_metrics_port_in_use_cannot_listen(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = ringd(tmp_path, "--metrics", f"127.0.0.1:{port}")
    assert done.returncode == 5, done.stderr
    line = f"ringd[x]: error: cannot serve metrics on 127.0.0.1:{port}: "
    assert line in done.stderr, done.stderr  # the default log format: readable text
    assert "listening on" not in done.stdout
