"""``ringd``: one ringkv cluster node.

    ringd --name NAME --listen HOST:PORT --data DIR [--seeds HOST:PORT,...] [--new-cluster]
          [--n 3] [--r 2] [--w 2] [--cluster NAME] [--advertise HOST:PORT] [--config FILE.toml]
          [--secret-file PATH [--old-secret-file PATH]] [--tls-cert PEM --tls-key PEM --tls-ca PEM]

Every setting also comes from the environment (``RINGKV_NAME``, ``RINGKV_LISTEN``, ...: the
setting's name in capitals) and from a TOML file of the same keys (``--config`` or
``RINGKV_CONFIG``); a flag wins over the environment, which wins over the file. N defaults to 3
on every node (it is a cluster-wide setting); R and W default to a majority of N. While the
cluster has fewer than N members, the node caps the *default* R and W by the replicas that exist.

Starting: a data directory that holds a cluster rejoins it (through ``--seeds`` and the members
it remembers). An empty one joins through ``--seeds``, or founds a cluster with
``--new-cluster`` (with seeds too, it founds only if none of them belongs to a cluster — so a
founder whose data was wiped rejoins its cluster); with neither, ringd refuses to start (exit
2). See ``ring.core.view``.

TCP (clients, replication) and UDP (gossip) share the port; ``--listen HOST:0`` picks a free
one. Once listening, ringd prints ``ringd NAME listening on ADDRESS`` on stdout, ADDRESS being
the address the node announces to its peers (``--advertise``, else the listen address; for a
wildcard listen address, the host name); once it serves (it knows its whole cluster), it prints
``ringd NAME serving``. Logs go to stderr, one line per event.

SIGTERM or SIGINT: stop accepting, let the requests it coordinates finish (up to
``drain_s``), tell the peers it is going down, close the data directory, exit 0. A second signal
skips the wait.

Exit codes: 0 clean stop; 2 bad settings (also: an empty data directory with neither seeds nor
``--new-cluster``, or a cluster that refused this node's settings); 4 data directory locked or
unusable (also when a write to it fails while serving: the node acknowledges nothing more and
stops); 5 cannot listen on the address; 70 internal error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import random
import resource
import signal
import socket
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import uvloop

from ring.core.membership import MAX_FIELD_BYTES, MembershipConfig
from ring.core.node import Node, NodeConfig, StartupError
from ring.errors import InvalidInput, StoreLocked
from ring.logs import FORMATS, ev, install_handler
from ring.net.auth import (
    Security,
    client_context,
    read_secret_file,
    secret_file_exposed,
    server_context,
    weak_secret,
)
from ring.net.codec import DEFAULT_CLUSTER, MAX_FRAME_BYTES, format_address, parse_address
from ring.net.metrics import (
    MetricsServer,
    NodeCollector,
    RequestStats,
    registry_for,
    rocksdb_property,
)
from ring.net.runtime import Runtime
from ring.storage import RocksStorage
from ring.storage.group import GroupCommitStorage

log = logging.getLogger("ringd")

OK, USAGE, STORE, NETWORK, INTERNAL = 0, 2, 4, 5, 70

# name -> (type, help). Flags are --name-with-dashes; env RINGKV_NAME_IN_CAPITALS.
SETTINGS: dict[str, tuple[type, str]] = {
    "name": (str, "this node's name, unique in the cluster (required)"),
    "listen": (str, "HOST:PORT for TCP and UDP (default 127.0.0.1:7070; port 0 = any free)"),
    "data": (str, "data directory (required)"),
    "seeds": (list, "comma-separated HOST:PORT of nodes to join through"),
    "new_cluster": (
        bool,
        "found a new cluster if the data directory holds none and no seed belongs to one "
        "(ignored once the directory holds a cluster)",
    ),
    "n": (int, "replicas per key, the same on every node (default 3)"),
    "r": (int, "default read quorum (default a majority of N)"),
    "w": (int, "default write quorum (default a majority of N)"),
    "cluster": (str, f"cluster name; nodes and clients must agree (default {DEFAULT_CLUSTER})"),
    "advertise": (str, "HOST[:PORT] peers reach this node at (default: the listen address)"),
    "partitions": (int, "partitions of the ring, fixed at cluster creation (default 1024)"),
    "handoff_rate_mb_s": (
        float,
        "partition transfers into this node are throttled to this many MB/s (default 32)",
    ),
    "aae_interval_s": (
        float,
        "anti-entropy: every partition is compared with each co-replica this often (default 60)",
    ),
    "tombstone_grace_s": (
        float,
        "a tombstone is reaped this long after its delete at the earliest, and only once "
        "every replica holds it (default 86400)",
    ),
    "request_timeout_ms": (int, "quorum request timeout (default 2000)"),
    "tick_ms": (int, "timer resolution of the node (default 20)"),
    "sync": (bool, "fsync every write (default false: write-ahead log only)"),
    "drain_s": (float, "on SIGTERM, wait this long for requests in flight (default 5)"),
    "max_frame_bytes": (int, f"largest TCP frame accepted (default {MAX_FRAME_BYTES})"),
    "log_level": (str, "debug, info, warning or error (default info)"),
    "log_format": (str, "text (default: one readable line per event) or json (one object a line)"),
    "metrics": (
        str,
        "HOST:PORT to serve Prometheus metrics on, at /metrics (default: off; port 0 = any free)",
    ),
    "secret_file": (
        str,
        "file holding the cluster secret: peers, clients and gossip must prove they know it "
        "(default: none, an open cluster)",
    ),
    "old_secret_file": (
        str,
        "during a secret rotation, the previous secret: accepted and proved as well",
    ),
    "tls_cert": (str, "PEM certificate of this node: TLS for client and peer connections"),
    "tls_key": (str, "PEM private key of --tls-cert"),
    "tls_ca": (str, "PEM CA that signed every node's certificate (needed with --tls-cert)"),
}


TUNING = ("partitions", "handoff_rate_mb_s", "request_timeout_ms", "tick_ms")
NODE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(NodeConfig)}


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    name: str
    listen: str
    data: str
    seeds: tuple[str, ...]
    new_cluster: bool
    n: int
    r: int
    w: int
    cluster: str
    advertise: str | None
    partitions: int
    handoff_rate_mb_s: float
    aae_interval_s: float
    tombstone_grace_s: float
    request_timeout_ms: int
    tick_ms: int
    sync: bool
    drain_s: float
    max_frame_bytes: int
    log_level: str
    # The secrets (the secret, then an old one) and TLS contexts, from the settings above.
    security: Security = dataclasses.field(default_factory=Security)
    log_format: str = "text"  # ``ring.logs``: text or json
    metrics: str | None = None  # HOST:PORT of the Prometheus endpoint, or None


def _convert(key: str, value: Any, source: str) -> Any:
    kind = SETTINGS[key][0]
    try:
        if kind is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(x).strip() for x in items if str(x).strip())
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"not a boolean: {value!r}")
            return text in ("1", "true", "yes", "on")
        if kind is int and isinstance(value, float | bool):
            raise ValueError(f"not an integer: {value!r}")
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key} from {source}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ringd",
        description="Run one ringkv cluster node. Every flag also reads RINGKV_<NAME> from the "
        "environment and the key <name> from --config FILE.toml; flags win, then env.",
    )
    for key, (kind, text) in SETTINGS.items():
        flag = "--" + key.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, dest=key, action="store_const", const=True, help=text)
        else:
            parser.add_argument(flag, dest=key, default=None, help=text)
    parser.add_argument("--config", default=None, help="TOML file with any of these settings")
    return parser


def load_settings(argv: list[str] | None, env: dict[str, str] | None = None) -> Settings:
    """Merge flags over environment over TOML; raise ConfigError with a clear message."""
    env = dict(os.environ) if env is None else env
    args = vars(_parser().parse_args(argv))
    values: dict[str, Any] = {}
    config = args.pop("config") or env.get("RINGKV_CONFIG")
    if config:
        try:
            with open(config, "rb") as f:
                table = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read the config file {config}: {exc}") from None
        unknown = sorted(set(table) - set(SETTINGS))
        if unknown:
            raise ConfigError(
                f"unknown key(s) in {config}: {', '.join(unknown)}; known: {', '.join(SETTINGS)}"
            )
        values.update({k: _convert(k, v, config) for k, v in table.items()})
    for key in SETTINGS:
        if env.get("RINGKV_" + key.upper()):
            values[key] = _convert(key, env["RINGKV_" + key.upper()], "RINGKV_" + key.upper())
        if args.get(key) is not None:
            values[key] = _convert(key, args[key], "--" + key.replace("_", "-"))
    return _settle(values)


def _settle(values: dict[str, Any]) -> Settings:
    for required in ("name", "data"):
        if not values.get(required):
            raise ConfigError(
                f"--{required} is required (or RINGKV_{required.upper()}, or {required} = ... "
                "in the config file)"
            )
    listen = values.get("listen") or "127.0.0.1:7070"
    seeds: tuple[str, ...] = values.get("seeds", ())
    try:
        for address in (listen, *seeds):
            parse_address(address)
    except InvalidInput as exc:
        raise ConfigError(str(exc)) from None
    # N is a cluster-wide setting, so its default does not depend on this node's seeds: a seed
    # started alone must agree with the nodes that join it. A node alone still serves with the
    # defaults, because the node caps the default R and W by the replicas that exist.
    n = values.get("n", 3)
    r = values.get("r", n // 2 + 1)
    w = values.get("w", n // 2 + 1)
    if not (1 <= r <= n and 1 <= w <= n):
        raise ConfigError(f"need 1 <= R, W <= N; got N={n} R={r} W={w} (set --n as well)")
    cluster = values.get("cluster") or DEFAULT_CLUSTER
    for what, text in (("name", values["name"]), ("cluster", cluster)):
        if not 0 < len(str(text).encode()) <= MAX_FIELD_BYTES:
            raise ConfigError(f"--{what} must be 1 to {MAX_FIELD_BYTES} bytes of UTF-8")
    level = str(values.get("log_level", "info")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log_level must be debug, info, warning or error, not {level.lower()}")
    tuning = {k: type(NODE_DEFAULTS[k])(values.get(k, NODE_DEFAULTS[k])) for k in TUNING}
    if any(v <= 0 for v in tuning.values()):
        raise ConfigError(f"{', '.join(TUNING)} must be positive")
    rate = tuning["handoff_rate_mb_s"]
    if not 0.01 <= rate <= 100_000:  # also refuses nan and inf
        raise ConfigError(f"handoff_rate_mb_s must be between 0.01 and 100000, not {rate}")
    interval = float(values.get("aae_interval_s", 60.0))
    if not 0.1 <= interval <= 86_400:  # also refuses nan and inf
        raise ConfigError(f"aae_interval_s must be between 0.1 and 86400, not {interval}")
    grace = float(values.get("tombstone_grace_s", 86_400.0))
    if not 0 <= grace <= 10 * 365 * 86_400:
        raise ConfigError(f"tombstone_grace_s must be between 0 and 315360000, not {grace}")
    security = _security(values, cluster)
    log_format = str(values.get("log_format", "text")).strip().lower()
    if log_format not in FORMATS:
        raise ConfigError(f"log_format must be text or json, not {log_format!r}")
    metrics = values.get("metrics") or None
    if metrics is not None:
        try:
            parse_address(metrics)
        except InvalidInput:
            raise ConfigError(
                f"metrics address {metrics!r} is not HOST:PORT (e.g. 127.0.0.1:9100)"
            ) from None
    return Settings(
        name=values["name"],
        listen=listen,
        data=values["data"],
        seeds=seeds,
        new_cluster=bool(values.get("new_cluster", False)),
        n=n,
        r=r,
        w=w,
        cluster=cluster,
        advertise=values.get("advertise"),
        **tuning,
        aae_interval_s=interval,
        tombstone_grace_s=grace,
        sync=bool(values.get("sync", False)),
        drain_s=float(values.get("drain_s", 5.0)),
        max_frame_bytes=int(values.get("max_frame_bytes", MAX_FRAME_BYTES)),
        log_level=level,
        security=security,
        log_format=log_format,
        metrics=metrics,
    )


def _security(values: dict[str, Any], cluster: str) -> Security:
    """The secrets and TLS contexts the settings name; ConfigError for a missing or empty
    secret file, an old secret without a secret, or an incomplete or unreadable TLS setup."""
    secret_file, old_file = values.get("secret_file"), values.get("old_secret_file")
    if old_file and not secret_file:
        raise ConfigError("--old-secret-file needs --secret-file (the new secret) as well")
    tls = {k: values.get(k) for k in ("tls_cert", "tls_key", "tls_ca")}
    if any(tls.values()) and not all(tls.values()):
        missing = ", ".join("--" + k.replace("_", "-") for k, v in tls.items() if not v)
        raise ConfigError(
            f"TLS needs --tls-cert, --tls-key and --tls-ca together; missing {missing}"
        )
    try:
        secrets = [
            read_secret_file(f, w)
            for f, w in ((secret_file, "--secret-file"), (old_file, "--old-secret-file"))
            if f
        ]
        server_ssl = client_ssl = None
        if all(tls.values()):
            cert, key, ca = str(tls["tls_cert"]), str(tls["tls_key"]), str(tls["tls_ca"])
            server_ssl = server_context(cert, key, ca)
            client_ssl = client_context(ca, cert, key)
    except InvalidInput as exc:
        raise ConfigError(str(exc)) from None
    if len(secrets) == 2 and secrets[0] == secrets[1]:
        raise ConfigError("--old-secret-file holds the same secret as --secret-file")
    security = Security(secrets, cluster, server_ssl, client_ssl)
    files = (str(f) for f in (secret_file, old_file) if f)
    security.exposed_files = tuple(f for f in files if secret_file_exposed(f))
    return security


async def _start_metrics(
    settings: Settings, runtime: Runtime, storage: RocksStorage
) -> MetricsServer | Literal[False] | None:
    """With ``--metrics``: count requests, serve ``/metrics`` (``ring.net.metrics``) and print
    ``ringd NAME metrics on http://ADDRESS/metrics``. None without it; False (logged) when it
    cannot listen."""
    if settings.metrics is None:
        return None
    runtime.requests = RequestStats()
    collector = NodeCollector(
        runtime, cluster=settings.cluster, storage_property=rocksdb_property(storage)
    )
    server = MetricsServer(registry_for(collector))
    host, port = parse_address(settings.metrics)
    try:
        bound = format_address(*await server.start(host, port))
    except OSError as exc:
        error = str(exc.strerror or exc)
        log.error(
            "cannot serve metrics on %s: %s",
            settings.metrics,
            error,
            extra=ev("metrics_listen_failed", address=settings.metrics, error=error),
        )
        return False
    log.info("metrics at http://%s/metrics", bound, extra=ev("metrics_listening", address=bound))
    print(f"ringd {settings.name} metrics on http://{bound}/metrics", flush=True)
    return server


def advertised(settings: Settings, host: str, port: int) -> str:
    """The address peers reach us at: --advertise (its port defaulting to ours), else the
    listen host — or this machine's name when listening on every interface."""
    if settings.advertise:
        try:
            ahost, aport = parse_address(settings.advertise)
        except InvalidInput:  # a host without a port
            return format_address(settings.advertise.strip().strip("[]"), port)
        return format_address(ahost, aport or port)
    if host in ("", "*", "0.0.0.0", "::"):
        return format_address(socket.gethostname(), port)
    return format_address(host, port)


async def serve(settings: Settings, storage: RocksStorage) -> int:
    loop = asyncio.get_running_loop()
    # The writes of one loop iteration share one write-ahead-log append (group commit; with
    # --sync one fsync, in a worker thread); the runtime holds every frame until they are
    # durable, so acknowledgements stay behind them. A failed commit stops the node.
    grouped = GroupCommitStorage(storage, sync=settings.sync)
    stop = asyncio.Event()
    halted: list[str] = []

    def on_halt(reason: str) -> None:
        halted.append(reason)
        stop.set()

    runtime = Runtime(
        settings.name,
        cluster=settings.cluster,
        tick_ms=settings.tick_ms,
        max_frame_bytes=settings.max_frame_bytes,
        commit=grouped.start_commit,
        on_commit_error=lambda _error: stop.set(),
        settings={"n": settings.n, "partitions": settings.partitions},
        on_serving=lambda: print(f"ringd {settings.name} serving", flush=True),
        on_halt=on_halt,
        on_retired=lambda reason: (print(f"ringd {settings.name} left", flush=True), stop.set()),
        security=settings.security,
    )
    host, port = parse_address(settings.listen)
    try:
        real_port = await runtime.listen(host, port)
    except OSError as exc:
        error = str(exc.strerror or exc)
        log.error(
            "cannot listen on %s: %s",
            settings.listen,
            error,
            extra=ev("listen_failed", address=settings.listen, error=error),
        )
        return NETWORK
    metrics = await _start_metrics(settings, runtime, storage)
    if metrics is False:
        await runtime.close_sockets()
        return NETWORK
    address = advertised(settings, host, real_port)
    config = NodeConfig(
        name=settings.name,
        address=address,
        cluster=settings.cluster,
        seeds=settings.seeds,
        new_cluster=settings.new_cluster,
        n=settings.n,
        r=settings.r,
        w=settings.w,
        partitions=settings.partitions,
        handoff_rate_mb_s=settings.handoff_rate_mb_s,
        aae_interval_ms=max(1, round(settings.aae_interval_s * 1000)),
        tombstone_grace_ms=round(settings.tombstone_grace_s * 1000),
        request_timeout_ms=settings.request_timeout_ms,
        tick_ms=settings.tick_ms,
        sync=settings.sync,
        # A busy event loop answers pings late; a longer ack timeout than the simulator's keeps
        # a loaded node from being suspected by its peers (down is still detected in ~3 s).
        membership=MembershipConfig(ack_timeout_ms=300, probe_interval_ms=400),
    )
    # A restarted node announces a higher incarnation than any it used before, so peers take it
    # as up at once (wall-clock seconds; the core also refutes older claims about itself).
    try:
        node = Node(
            config,
            grouped,
            now_ms=runtime.clock(),
            rng=random.Random(os.urandom(16)),
            incarnation=time.time_ns() // 1_000_000_000,
        )
    except StartupError as exc:
        log.error("%s", exc, extra=ev("startup_refused"))
        await runtime.close_sockets()
        if metrics:
            await metrics.close()
        return USAGE
    signals: list[int] = []

    def on_signal(signum: int) -> None:
        signals.append(signum)
        if len(signals) > 1:
            log.warning(
                "second signal: not waiting for requests in flight", extra=ev("second_signal")
            )
            runtime.cut_drain()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await runtime.start(node)
    log.info(
        "listening on %s (tcp+udp), node address %s, cluster %r, N=%d R=%d W=%d, seeds %s",
        format_address(host, real_port),
        address,
        settings.cluster,
        settings.n,
        settings.r,
        settings.w,
        ",".join(settings.seeds) or "none",
        extra=ev(
            "listening",
            listen=format_address(host, real_port),
            address=address,
            cluster=settings.cluster,
            n=settings.n,
            r=settings.r,
            w=settings.w,
            seeds=list(settings.seeds),
        ),
    )
    _warn_security(settings)
    print(f"ringd {settings.name} listening on {address}", flush=True)
    await stop.wait()
    if signals:
        signame = signal.Signals(signals[0]).name
        log.info("%s: stopping", signame, extra=ev("stopping", signal=signame))
    await runtime.shutdown(0 if halted else settings.drain_s)
    if metrics:
        await metrics.close()
    error = runtime.commit_error
    try:
        grouped.close()  # waits for the commit worker, writes what the stop itself wrote
    except Exception as exc:
        error = error or exc
    if error is not None:
        log.error(
            "stopped: the data directory %s is unusable (%s)",
            settings.data,
            error,
            extra=ev("stopped", exit=STORE, why="data directory unusable", error=str(error)),
        )
        return STORE
    if halted:
        log.error(
            "stopped: fix the settings to match the cluster's, or join another cluster",
            extra=ev("stopped", exit=USAGE, why="refused by the cluster"),
        )
        return USAGE
    log.info("stopped", extra=ev("stopped", exit=OK))
    return OK


def _warn_security(settings: Settings) -> None:
    security = settings.security
    secrets, tls = len(security.secrets), security.server_ssl is not None
    if not secrets:
        log.warning(
            "no cluster secret (--secret-file): anyone who can reach this node's port can join "
            "the cluster, forge its gossip and read or write any key; see README, Security",
            extra=ev("security", secret=False, tls=tls),
        )
    elif any(weak_secret(s) for s in security.secrets):
        log.warning(
            "the cluster secret is docker-compose's placeholder or shorter than 16 bytes: "
            "anyone may know or guess it; use a long random one (openssl rand -hex 32)",
            extra=ev("weak_secret"),
        )
    for path in security.exposed_files:
        log.warning(
            "the secret file %s may be read by other users (group or others' permissions): "
            "chmod 600 it",
            path,
            extra=ev("secret_file_exposed", path=path),
        )
    if secrets:
        rotating = " and the old one (--old-secret-file): a rotation is under way"
        log.info(
            "cluster secret on%s%s",
            rotating if secrets > 1 else "",
            "; TLS on for client and peer connections" if tls else "",
            extra=ev("security", secret=True, old_secret=secrets > 1, tls=tls),
        )
    elif tls:
        log.info("TLS on for client and peer connections", extra=ev("security", tls=True))


def _empty(path: str) -> bool:
    try:
        return not os.listdir(path)
    except FileNotFoundError:
        return True


def raise_fd_limit() -> int:
    """Raise the soft limit of open files to the hard one (many systems start processes at
    1024, too few for a node's connections beside its store's files); return the soft limit
    in force."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return -1
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return soft
    return target


def run(
    settings: Settings,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop,
) -> int:
    raise_fd_limit()
    if _empty(settings.data) and not settings.seeds and not settings.new_cluster:
        # Refused before anything is created (the core refuses too, for a directory that holds
        # data but no cluster).
        log.error(
            "the data directory %s holds no cluster: give --seeds to join a cluster or "
            "--new-cluster to found one",
            settings.data,
            extra=ev("no_cluster", data=settings.data),
        )
        return USAGE
    try:
        storage = RocksStorage(settings.data, sync=settings.sync)
    except StoreLocked as exc:
        log.error("%s", exc, extra=ev("data_locked", data=settings.data))
        return STORE
    except Exception as exc:  # rocksdict reports IO problems as plain exceptions
        log.error(
            "cannot open the data directory %s: %s",
            settings.data,
            exc,
            extra=ev("data_unusable", data=settings.data, error=str(exc)),
        )
        return STORE
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(serve(settings, storage))
    finally:
        storage.close()


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
    except ConfigError as exc:
        sys.stderr.write(f"ringd: error: {exc}\n")
        return USAGE
    install_handler(settings.log_format, settings.name, settings.log_level)
    try:
        return run(settings)
    except KeyboardInterrupt:
        return OK
    except Exception:
        log.exception("internal error", extra=ev("internal_error"))
        return INTERNAL


if __name__ == "__main__":
    sys.exit(main())
