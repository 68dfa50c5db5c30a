"""Cluster commands: ``status``, ``ring`` and ``cluster local|stop``.

``status`` and ``ring`` ask one node of ``--nodes`` (or ``$RINGKV_NODES``) for its view.
``cluster local`` starts N ``ringd`` processes on 127.0.0.1 for a newcomer to try: their data
lives under ``--dir`` (node1, node2, ...), their ports are chosen once and remembered in
``DIR/cluster.json`` so a restart finds the same addresses. In the foreground (the default) it
prints the addresses and stops every node cleanly (SIGTERM, by PID) on Ctrl-C or SIGTERM; with
``--detach`` it returns once they serve and ``cluster stop --dir DIR`` stops them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from ring.cli import reach
from ring.cli.app import UNAVAILABLE, UNREACHABLE, USAGE, CliError, arguments, command, group
from ring.cli.output import Output

READY = re.compile(r"ringd (\S+) listening on (\S+)")
SERVING = re.compile(r"ringd (\S+) serving")
STATE_FILE = "cluster.json"


def nodes_of(args: argparse.Namespace) -> str:
    nodes = getattr(args, "nodes", None) or os.environ.get("RINGKV_NODES")
    if not nodes:
        raise CliError("this command needs --nodes HOST:PORT[,...] or RINGKV_NODES", USAGE)
    return str(nodes)


def _client(args: argparse.Namespace) -> Any:
    import ring

    return ring.connect(nodes_of(args))


# --- status / ring -----------------------------------------------------------------------------


def _status_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 5 unless the contacted node serves (a health check)",
    )


@command("status", "members of the cluster as the contacted node sees them")
@arguments(_status_args)
def status(args: argparse.Namespace, out: Output) -> None:
    with _client(args) as client:
        info = client.status()
    if args.check and info.get("serving") is False:
        raise CliError(
            f"node {info.get('node')} does not serve yet: it waits for {info.get('waiting_for')}",
            UNREACHABLE,
        )
    given = reach.given_addresses(nodes_of(args))
    members = [
        {
            "name": m["name"],
            "address": m["address"],
            "state": m["state"],
            "partitions": int(m.get("partitions", 0)),
            "aae": _member_aae(info, m, given),
        }
        for m in info["members"]
    ]
    hints = {str(k): int(v) for k, v in (info.get("hints") or {}).items()}
    pending = int(info.get("transfers_pending") or 0)
    if out.json:
        out.emit(
            {
                "node": info.get("node"),
                "serving": info.get("serving"),
                "epoch": info.get("epoch"),
                "transfers_pending": pending,
                "members": members,
                "hints": hints,
            }
        )
        return
    width = max([len(m["name"]) for m in members] + [4])
    out.line(
        f"{'NAME':<{width}}  {'ADDRESS':<21}  {'STATE':<8}  {'PARTITIONS':>10}  {'HINTS':>5}  "
        "ANTI-ENTROPY"
    )
    for m in members:
        held = hints.get(m["name"], 0)
        a = m["aae"]
        aae = (
            "-"
            if a is None
            else f"{a['exchanges']} exchanges, {a['keys_repaired']} repaired, "
            f"{a['tombstones_reaped']} reaped, last sweep {a['last_sweep_s']:.0f} s ago"
        )
        out.line(
            f"{m['name']:<{width}}  {m['address']:<21}  {m['state']:<8}  "
            f"{m['partitions']:>10}  {held:>5}  {aae}"
        )
    settled = "settled" if not pending else f"{pending} partition transfer(s) pending"
    out.line(f"ring epoch {info.get('epoch')}: {settled}")


def _member_aae(
    info: dict[str, Any], member: dict[str, Any], given: dict[str, str]
) -> dict[str, Any] | None:
    """A member's anti-entropy counters, from the member itself — at its ``--nodes`` address if
    it is one of them, else at the one it advertises (``ring.cli.reach``); None when it is not
    up or does not answer within a couple of seconds."""
    import ring

    if member["name"] == info.get("node"):
        got = info.get("aae")
    elif member.get("state") != "up" or not member.get("address"):
        return None
    else:
        address = reach.address_of(member["name"], member["address"], given)
        try:
            with ring.connect(address, timeout=reach.PROBE_TIMEOUT_S) as client:
                got = client.status().get("aae")
        except (ring.RingError, OSError):
            return None
    if not isinstance(got, dict):
        return None
    return {
        "exchanges": int(got.get("exchanges", 0)),
        "keys_repaired": int(got.get("keys_repaired", 0)),
        "tombstones_reaped": int(got.get("tombstones_reaped", 0)),
        "last_sweep_s": float(got.get("last_sweep_s", 0.0)),
    }


@command("ring", "partitions owned per node, the balance of the ring, transfers in progress")
def ring_cmd(args: argparse.Namespace, out: Output) -> None:
    with _client(args) as client:
        info = client.ring_info()
    if out.json:
        out.emit(info)
        return
    parts, n, members = info["partitions"], info["n"], info["members"]
    out.line(
        f"{parts} partitions, N={n}, {len(members)} members, epoch {info['epoch']}, "
        f"claimant {info['claimant']}"
    )
    fair = parts * min(n, max(1, len(members))) / max(1, len(members))
    out.line(f"{'NAME':<16}{'PRIMARY':>9}{'REPLICAS':>10}{'BALANCE':>9}")
    for m in members:
        note = "  (leaving)" if m.get("leaving") else ""
        out.line(
            f"{m['name']:<16}{m['primary']:>9}{m['replicas']:>10}{m['replicas'] / fair:>9.2f}{note}"
        )
    transfers, cleanups = info.get("transfers") or [], info.get("cleanups") or []
    if not transfers and not cleanups:
        out.line("no transfers: the ring has settled")
        return
    out.line(
        f"{len(transfers)} partition(s) moving, {len(cleanups)} old copie(s) to delete "
        f"({info['transfers_pending']} transfer(s) pending)"
    )
    for t in transfers[:20]:
        copied = ", ".join(t["copied"]) or "none yet"
        out.line(
            f"  partition {t['partition']}: {','.join(t['from'])} -> {','.join(t['to'])} "
            f"(copied by: {copied})"
        )
    if len(transfers) > 20:
        out.line(f"  ... and {len(transfers) - 20} more")


def _locate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", help="the key (UTF-8)")


@command("locate", "which members hold KEY: its partition, owners and pending owners")
@arguments(_locate_args)
def locate_cmd(args: argparse.Namespace, out: Output) -> None:
    with _client(args) as client:
        info = client.locate(args.key)
    if out.json:
        out.emit(info)
        return
    pending = ", ".join(info.get("pending") or []) or "none"
    out.line(
        f"partition {info['partition']}: owners {', '.join(info['owners'])} (pending: {pending}; "
        f"ring epoch {info['epoch']})"
    )


def _change_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the member's name")


def _change(args: argparse.Namespace, out: Output, op: str) -> None:
    from ring.errors import InvalidInput

    with _client(args) as client:
        try:
            result = client.leave(args.name) if op == "leave" else client.remove(args.name)
        except InvalidInput as exc:
            raise CliError(str(exc), USAGE) from None
    if out.json:
        out.emit(result)
        return
    members = ", ".join(result.get("members") or [])
    what = "leaves once it has handed off its data" if op == "leave" else "is removed"
    out.line(
        f"{result['name']} {what}: {result['moves']} replica slot(s) move; "
        f"ring epoch {result['epoch']}, members after the change: {members}"
    )
    if result.get("warning"):
        out.line(f"note: {result['warning']}")
    out.line("watch it with: ringctl status (transfers pending) or ringctl ring")


@command(
    "leave",
    "take a member out of the cluster after it handed off its data (its ringd exits 0)",
)
@arguments(_change_args)
def leave_cmd(args: argparse.Namespace, out: Output) -> None:
    _change(args, out, "leave")


@command(
    "remove",
    "take a member that is gone for good out; its data is rebuilt from the other replicas",
)
@arguments(_change_args)
def remove_cmd(args: argparse.Namespace, out: Output) -> None:
    _change(args, out, "remove")


# --- cluster local -----------------------------------------------------------------------------

group("cluster", "run a local cluster of ringd processes")


def _local_args(parser: argparse.ArgumentParser) -> None:
    # Here --nodes is a count, not the global --nodes list of addresses: the command is
    # registered with conflict_handler="resolve" so that this one takes over.
    parser.add_argument("--nodes", dest="count", type=int, default=3, help="how many (default 3)")
    parser.add_argument("--dir", required=True, help="directory for the nodes' data and state")
    parser.add_argument("--detach", action="store_true", help="return once the nodes serve")
    parser.add_argument("--n", type=int, default=None, help="replicas per key (default 3)")


def _free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return int(port)
        except OSError:
            continue
    raise CliError("could not find a free port on 127.0.0.1", UNAVAILABLE)


def _load_state(root: str) -> dict[str, Any]:
    try:
        with open(os.path.join(root, STATE_FILE), encoding="utf-8") as f:
            return dict(json.load(f))
    except (OSError, ValueError):
        return {}


def _save_state(root: str, state: dict[str, Any]) -> None:
    tmp = os.path.join(root, STATE_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, os.path.join(root, STATE_FILE))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _wait_for(
    pattern: re.Pattern[str],
    proc: subprocess.Popen[bytes],
    log_path: str,
    deadline: float,
    offset: int = 0,
) -> str:
    """Wait until ringd's log (from ``offset``: this run) has a line ``pattern`` matches; fail
    if ringd exits first."""
    while time.monotonic() < deadline:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            match = pattern.search(f.read())
        if match:
            return match.group(match.lastindex or 0)
        if proc.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-600:]
            raise CliError(f"ringd exited with code {proc.returncode}:\n{tail}", UNAVAILABLE)
        time.sleep(0.05)
    what = "listen" if pattern is READY else "serve"
    raise CliError(f"ringd did not {what} in time (see {log_path})", UNAVAILABLE)


def wait_settled(addresses: str, names: list[str], deadline: float) -> None:
    """Wait until every one of ``names`` owns partitions and no transfer is pending (the nodes
    serve at once; the claimant then gives the joiners their share of the ring)."""
    import ring

    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            with ring.connect(addresses, timeout=2.0) as client:
                info = client.status()
        except ring.RingError:
            time.sleep(0.1)
            continue
        owners = {m["name"] for m in info.get("members", []) if m.get("partitions")}
        if owners >= set(names) and not info.get("transfers_pending"):
            return
        time.sleep(0.1)
    raise CliError(f"the ring did not settle in time (last status: {info})", UNAVAILABLE)


def start_local(
    root: str, count: int, n: int | None, secret_file: str | None = None
) -> list[dict[str, Any]]:
    """Start the nodes (with ``secret_file``: each with ``--secret-file`` it)."""
    os.makedirs(root, exist_ok=True)
    state = _load_state(root)
    running = [x for x in state.get("nodes", []) if _alive(int(x.get("pid", 0)))]
    if running:
        raise CliError(
            f"a local cluster already runs from {root} (pids "
            f"{', '.join(str(x['pid']) for x in running)}); stop it with: ringctl cluster stop "
            f"--dir {root}",
            UNAVAILABLE,
        )
    ports = state.get("ports") or [_free_port() for _ in range(count)]
    ports = (ports + [_free_port() for _ in range(count)])[:count]
    addresses = [f"127.0.0.1:{port}" for port in ports]
    nodes: list[dict[str, Any]] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # docker-compose's layout: node1 founds the cluster (the flag is ignored once its data
        # directory holds one), every node has the others as seeds.
        for i, address in enumerate(addresses, start=1):
            name = f"node{i}"
            log_path = os.path.join(root, f"{name}.log")
            with open(log_path, "ab"):
                offset = os.path.getsize(log_path)
            cmd = [sys.executable, "-m", "ring.cli.ringd", "--name", name, "--listen", address]
            cmd += ["--data", os.path.join(root, name)]
            seeds = [a for a in addresses if a != address]
            if seeds:
                cmd += ["--seeds", ",".join(seeds)]
            if i == 1:
                cmd += ["--new-cluster"]
            if secret_file is not None:
                cmd += ["--secret-file", secret_file]
            if count > 1 or n is not None:
                r = n if n is not None else min(3, count)
                cmd += ["--n", str(r), "--r", str(r // 2 + 1), "--w", str(r // 2 + 1)]
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
            procs.append(proc)
            nodes.append(
                {
                    "name": name,
                    "pid": proc.pid,
                    "address": address,
                    "log": log_path,
                    "offset": offset,
                }
            )
        deadline = time.monotonic() + 30
        for proc, x in zip(procs, nodes):
            _wait_for(READY, proc, x["log"], deadline, x["offset"])
        for proc, x in zip(procs, nodes):
            _wait_for(SERVING, proc, x["log"], deadline, x["offset"])
            del x["offset"]
        wait_settled(",".join(addresses), [x["name"] for x in nodes], deadline)
    except BaseException:
        stop_nodes(nodes)
        raise
    _save_state(root, {"ports": ports, "nodes": nodes})
    return nodes


def stop_nodes(nodes: list[dict[str, Any]], timeout: float = 15.0) -> None:
    for x in nodes:
        if _alive(x["pid"]):
            os.kill(x["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for x in nodes:
        while _alive(x["pid"]) and time.monotonic() < deadline:
            try:
                if os.waitpid(x["pid"], os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if _alive(x["pid"]):
            os.kill(x["pid"], signal.SIGKILL)


@command(
    "cluster local",
    "start N ringd nodes on 127.0.0.1 (Ctrl-C stops them)",
    conflict_handler="resolve",
)
@arguments(_local_args)
def cluster_local(args: argparse.Namespace, out: Output) -> None:
    if args.count < 1:
        raise CliError("--nodes must be at least 1", USAGE)
    root = os.path.abspath(args.dir)
    if getattr(args, "tls_ca", None) or os.environ.get("RINGKV_TLS_CA"):
        raise CliError(
            "cluster local does not start nodes with TLS (they need certificates and keys): "
            "start ringd with --tls-cert, --tls-key and --tls-ca yourself, or leave out "
            "--tls-ca / RINGKV_TLS_CA",
            USAGE,
        )
    secret = getattr(args, "secret_file", None) or os.environ.get("RINGKV_SECRET_FILE") or None
    secret = os.path.abspath(secret) if secret else None
    nodes = start_local(root, args.count, args.n, secret)
    addresses = ",".join(x["address"] for x in nodes)
    if out.json:
        out.emit({"nodes": nodes, "RINGKV_NODES": addresses})
    else:
        for x in nodes:
            out.line(f"{x['name']}  {x['address']}  pid {x['pid']}  log {x['log']}")
        out.line(f"RINGKV_NODES={addresses}")
    out.stdout.flush()
    if args.detach:
        return
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopping and any(_alive(x["pid"]) for x in nodes):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop_nodes(nodes)
        sys.stderr.write("ringctl: local cluster stopped\n")


def _stop_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", required=True, help="the directory given to cluster local")


@command("cluster stop", "stop the nodes a detached `cluster local` started")
@arguments(_stop_args)
def cluster_stop(args: argparse.Namespace, out: Output) -> None:
    root = os.path.abspath(args.dir)
    nodes = [x for x in _load_state(root).get("nodes", []) if _alive(int(x["pid"]))]
    stop_nodes(nodes)
    out.line(f"stopped {len(nodes)} node(s)") if not out.json else out.emit({"stopped": len(nodes)})
