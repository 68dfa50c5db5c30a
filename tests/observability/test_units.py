"""The pieces of metrics and logs on their own: bucket placement, bounded labels, the JSON line
format, and key fingerprints."""

from __future__ import annotations

import gc
import io
import json
import logging
import re
import sys
import threading
import warnings
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ring.core.messages import key_ref
from ring.logs import JsonFormatter, TextFormatter, ev, install_handler
from ring.net.metrics import (
    CLIENT_BOUNDS_S,
    KNOWN_REFUSALS,
    NodeCollector,
    RequestStats,
    registry_for,
)


class Clock:
    def __init__(self) -> None:
        self.now = 10**12

    def __call__(self) -> int:
        return self.now


def test_latencies_fall_in_the_bucket_whose_bound_they_do_not_pass() -> None:
    clock = Clock()
    stats = RequestStats(clock)
    for elapsed_s in (0.0001, 0.00010001, 0.003, 10.0, 11.0):
        started = clock.now
        clock.now += round(elapsed_s * 1e9)
        stats.client("put", None, started)
    counts = stats.latency["put"].counts
    assert len(counts) == len(CLIENT_BOUNDS_S) + 1
    at = {bound: counts[i] for i, bound in enumerate((*CLIENT_BOUNDS_S, float("inf")))}
    assert at[0.0001] == 1 and at[0.00025] == 1 and at[0.005] == 1
    assert at[10.0] == 1 and at[float("inf")] == 1 and sum(counts) == 5
    assert stats.latency["put"].sum_ns == round(sum((0.0001, 0.00010001, 0.003, 10, 11)) * 1e9)


def test_labels_stay_bounded_whatever_clients_send() -> None:
    stats = RequestStats()
    started = stats.clock_ns()
    for op in ("x1", "x2", "\x00" * 100):
        stats.client(op, "made-up-error", started)
    stats.client("get", "quorum", started)
    assert stats.requests == {("other", "error"): 3, ("get", "quorum"): 1}
    assert set(stats.latency) == {"other", "get"}


class FakeRuntime:
    name = "n1"
    core = None

    def __init__(self) -> None:
        self.requests = RequestStats()

    def stats(self) -> dict[str, int]:
        return {"udp_received": 7, "auth_failed": 2, "auth_failed_bad_proof": 2, "peer_links": 1}

    def clock(self) -> int:
        return 0


def test_a_node_without_a_core_yet_still_renders_parseable_metrics() -> None:
    runtime = FakeRuntime()
    runtime.requests.client("put", None, runtime.requests.clock_ns())
    text = generate_latest(registry_for(NodeCollector(runtime, cluster="c"))).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("ringkv_serving", ())] == 0
    assert samples[("ringkv_gossip_messages_total", (("direction", "in"),))] == 7
    # a refusal counter of the shell is picked up by name; the total is not counted twice
    assert samples[("ringkv_refused_total", (("reason", "auth_failed_bad_proof"),))] == 2
    assert ("ringkv_refused_total", (("reason", "auth_failed"),)) not in samples
    assert samples[("ringkv_events_total", (("event", "auth_failed"),))] == 2
    assert samples[("ringkv_peer_links", ())] == 1
    assert ("ringkv_events_total", (("event", "peer_links"),)) not in samples  # a gauge
    assert samples[("ringkv_requests_total", (("op", "put"), ("result", "ok")))] == 1
    assert all(name.startswith("ringkv_") for name, _ in samples)
    # every known refusal has its series from the start, at 0 until counted
    for reason in KNOWN_REFUSALS:
        expected = 2 if reason == "auth_failed_bad_proof" else 0
        assert samples[("ringkv_refused_total", (("reason", reason),))] == expected, reason


NET = Path(__file__).resolve().parents[2] / "ring" / "net"


def test_every_refusal_the_shell_counts_is_a_known_refusal() -> None:
    """The refusal reasons in the code (AuthError reasons, _refuse reasons, literal counters)
    all have a series exported at 0: a new reason without one fails here."""
    auth = (NET / "auth.py").read_text()
    tcp = (NET / "tcp.py").read_text()
    reasons = set(re.findall(r'AuthError\(\s*"([a-z_]+)"', auth))
    reasons |= set(re.findall(r'_refuse\(\s*"([a-z_]+)"', tcp))
    literal = set(re.findall(r'count\("((?:auth_failed|udp_refused)_[a-z_]+)"\)', tcp))
    assert {"bad_proof", "unsigned", "replay", "timeout"} <= reasons and literal
    for reason in reasons:
        assert {f"auth_failed_{reason}", f"udp_refused_{reason}"} & set(KNOWN_REFUSALS), reason
    assert literal <= set(KNOWN_REFUSALS)


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("ringd", logging.WARNING, __file__, 1, msg, args, None)
    r.__dict__.update(extra)
    return r


def test_a_json_line_is_one_object_with_the_event_and_its_fields() -> None:
    line = JsonFormatter("n1").format(
        record("peer %s\nunreachable", "b", **ev("peer_unreachable", peer="b", delay=1.5))
    )
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["node"] == "n1"
    assert entry["event"] == "peer_unreachable" and entry["msg"] == "peer b\nunreachable"
    assert entry["fields"] == {"peer": "b", "delay": 1.5}
    assert entry["time"].endswith("Z") and len(entry["time"]) == len("2025-01-31T12:00:00.123Z")
    plain = json.loads(JsonFormatter("n1").format(record("no event", fields=object())))
    assert plain["event"] == "log" and plain["fields"] == {}


def test_an_exception_goes_into_the_fields_on_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        r = record("failed")
        r.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter("n1").format(r))
    assert entry["fields"]["exc_type"] == "ValueError"
    assert "Traceback" in entry["fields"]["traceback"]
    assert TextFormatter("ringd[n1]: ").format(record("x")) == "ringd[n1]: warning: x"


def test_a_key_is_logged_by_fingerprint_only() -> None:
    key = b"user:ada@example.com"
    ref = key_ref(key)
    assert ref == key_ref(key) and ref != key_ref(key + b"!")
    assert ref.startswith("key#") and len(ref) == 16
    assert "ada" not in ref and key.hex() not in ref


def test_other_libraries_records_and_warnings_come_out_as_json_lines() -> None:
    """``ringd --log-format json``: asyncio's and uvloop's records (through the root logger)
    and Python's warnings are JSON lines too, named by their logger."""
    root, own = logging.getLogger(), logging.getLogger("ringd")
    saved = (root.level, own.level, own.propagate)
    hooks = (sys.unraisablehook, threading.excepthook)
    stream = io.StringIO()
    handler = install_handler("json", "n1", "INFO", stream)
    try:
        own.info("mine", extra=ev("serving"))
        own.debug("below the level")
        try:
            raise ConnectionResetError("gone")
        except ConnectionResetError:
            logging.getLogger("asyncio").error("Fatal error on transport", exc_info=True)
        logging.getLogger("asyncio").info("below the others' level")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("careful", ResourceWarning, stacklevel=1)
        Finalizer()
        gc.collect()
        thread = threading.Thread(target=fail, name="worker")
        thread.start()
        thread.join()
    finally:
        sys.unraisablehook, threading.excepthook = hooks
        root.removeHandler(handler)
        logging.captureWarnings(False)
        root.setLevel(saved[0])
        own.setLevel(saved[1])
        own.propagate = saved[2]
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["event"] for x in lines] == [
        "serving",
        "asyncio",
        "py_warnings",
        "unraisable",
        "thread_exception",
    ]
    assert lines[1]["level"] == "error" and lines[1]["node"] == "n1"
    assert lines[1]["fields"]["exc_type"] == "ConnectionResetError"
    assert "careful" in lines[2]["msg"]
    assert lines[3]["fields"]["exc_type"] == "ValueError" and "in __del__" in lines[3]["msg"]
    assert lines[4]["fields"]["thread"] == "worker" and "thread broke" in lines[4]["msg"]


class Finalizer:
    def __del__(self) -> None:
        raise ValueError("in __del__")


def fail() -> None:
    raise RuntimeError("thread broke")
