"""A 3-node ``ringd`` cluster with a cluster secret, real processes on 127.0.0.1.

What users rely on: the cluster serves clients and ``ringctl`` that have the secret; a client
without it, or with another, is refused with an error that says "authentication failed"
(``ringctl`` exits 5), a missing secret file is a usage error (exit 2); a node without the
secret, or with another, cannot join; forged, stale and replayed gossip datagrams change
nothing; and all the while the cluster keeps serving.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

import ring
from ring.core import messages
from ring.core.membership import Leave, Ping
from ring.net.auth import AuthenticationFailed, GossipAuth
from tests.integration.harness import SERVING, wait_until
from tests.security.secure import SecureCluster, ringctl, secret_file

SECRET = b"0f3c9a1e7b5d2c8a4f6e1b3d5c7a9e2f"
WRONG = b"9e2f7a9c5d3b1e6f4a8c2d5b7e1a3c9f"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    root = tmp_path_factory.mktemp("secured")
    path = secret_file(root / "secret", SECRET)
    cluster = SecureCluster(root, secret=SECRET, extra=["--secret-file", path])
    try:
        cluster.start("a", "b", "c")
        cluster.converge(cluster.all_up())
        yield cluster
    finally:
        cluster.close()


def nodes(cluster: SecureCluster) -> str:
    return ",".join(cluster.addresses[n] for n in sorted(cluster.addresses))


def test_clients_with_the_secret_are_served_and_others_refused(secured: SecureCluster) -> None:
    with secured.client(smart=True) as client:
        client.put_many({f"k{i}": f"v{i}" for i in range(20)})
        assert client.get_many([f"k{i}" for i in range(20)]) == [b"v%d" % i for i in range(20)]
    for secret in (None, WRONG, WRONG.decode()):
        with pytest.raises(AuthenticationFailed, match="authentication failed"):
            ring.connect(nodes(secured), secret=secret)
    root = secured.root
    good, wrong = str(root / "secret"), secret_file(root / "wrong", WRONG)

    done = ringctl("--nodes", nodes(secured), "--secret-file", good, "put", "cli", "yes")
    assert done.returncode == 0, done.stderr
    done = ringctl("get", "cli", env={"RINGKV_NODES": nodes(secured), "RINGKV_SECRET_FILE": good})
    assert (done.returncode, done.stdout) == (0, "yes"), done.stderr
    for flags in ([], ["--secret-file", wrong]):
        done = ringctl("--nodes", nodes(secured), *flags, "get", "cli")
        assert done.returncode == 5, done
        assert "authentication failed" in done.stderr and "Traceback" not in done.stderr
    done = ringctl("--nodes", nodes(secured), "--secret-file", str(root / "missing"), "get", "x")
    assert done.returncode == 2 and "cannot read --secret-file" in done.stderr, done
    # Every refusal was counted where it happened; nothing else was.
    total: dict[str, int] = {}
    for name in sorted(secured.addresses):
        for counter, n in secured.refusals(name).items():
            total[counter] = total.get(counter, 0) + n
    assert total.get("auth_failed_no_secret", 0) >= 2  # ring.connect and ringctl
    assert total.get("auth_failed_abandoned", 0) >= 3  # wrong secrets left after the proofs
    assert set(total) <= {"auth_failed", "auth_failed_no_secret", "auth_failed_abandoned"}


def test_nodes_without_the_secret_cannot_join(secured: SecureCluster) -> None:
    root = secured.root
    seeds = [secured.addresses[n] for n in sorted(secured.addresses)]
    before = {n: secured.refusals(n) for n in sorted(secured.addresses)}
    outsiders = {
        "open": SecureCluster(root),  # no secret at all
        "wrong": SecureCluster(root, extra=["--secret-file", secret_file(root / "w", WRONG)]),
    }
    try:
        for name, outsider in outsiders.items():
            outsider.founder = "nobody"  # join, do not found
            outsider.spawn(f"outsider-{name}", seeds=seeds)
            outsider.wait_ready(f"outsider-{name}")

        def refused(counter: str) -> bool:
            return any(
                secured.refusals(n).get(counter, 0) > before[n].get(counter, 0)
                for n in secured.addresses
            )

        # Each outsider's joins reached the members, and were refused there; a second round
        # of them too (joins are retried every second), so none slipped through meanwhile.
        for counter in ("udp_refused_unsigned", "udp_refused_bad_mac"):
            wait_until(lambda c=counter: refused(c), 15, f"{counter} on a member")
        first = {n: secured.refusals(n) for n in secured.addresses}
        for counter in ("udp_refused_unsigned", "udp_refused_bad_mac"):
            wait_until(
                lambda c=counter: (
                    sum(secured.refusals(n).get(c, 0) for n in secured.addresses)
                    > sum(first[n].get(c, 0) for n in secured.addresses)
                ),
                15,
                f"more {counter}",
            )
        for name in sorted(secured.addresses):
            assert secured.states(name) == secured.all_up(), f"{name} let an outsider in"
        for name in outsiders:
            out = (root / f"outsider-{name}.out").read_text()
            assert not SERVING.search(out), f"outsider-{name} serves"
        with secured.client() as client:  # and the cluster served all along
            client.put("after-outsiders", "ok")
            assert client.get("after-outsiders", r=3) == b"ok"
    finally:
        for outsider in outsiders.values():
            outsider.close()


def _send(address: str, datagrams: list[bytes], sock: socket.socket) -> None:
    host, port = address.rsplit(":", 1)
    for data in datagrams:
        sock.sendto(data, (host, int(port)))


def test_forged_stale_and_replayed_datagrams_change_nothing(secured: SecureCluster) -> None:
    target = secured.addresses["a"]
    before = secured.refusals("a")
    # A permanent leave of member c: taken as true, it would put c out of the cluster for good.
    leave = msgpack.packb(messages.to_wire(Leave("c", 2**40, True)))
    stale_at = time.time_ns() // 1_000_000 - 10 * 60_000
    forged = [
        leave,  # unsigned
        GossipAuth((WRONG,), "ringkv").seal(leave),  # signed with another secret
        GossipAuth((SECRET,), "another").seal(leave),  # for another cluster
        GossipAuth((SECRET,), "ringkv").seal(leave, stale_at),  # recorded 10 minutes ago
    ]
    # A ping signed with the right secret, as if recorded off the wire: a node answers it once
    # (an ack, to the address it came from); the same datagram again is refused as a replay.
    ping = GossipAuth((SECRET,), "ringkv").seal(
        msgpack.packb(messages.to_wire(Ping(4242, "recorder", [], 0)))
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        _send(target, [*forged, ping], sock)
        acks = 0
        while acks == 0:
            data, _ = sock.recvfrom(65536)
            body = GossipAuth((SECRET,), "ringkv").open(data)  # the node signs its answer
            msg = messages.from_wire(msgpack.unpackb(body, raw=False))
            acks += isinstance(msg, messages.Gossip) and getattr(msg, "seq", None) == 4242
        _send(target, [ping, ping], sock)

        def counted() -> bool:
            now = secured.refusals("a")
            grew = {k: now.get(k, 0) - before.get(k, 0) for k in now}
            return grew.get("udp_refused_replay", 0) == 2 and (
                grew.get("udp_refused_unsigned", 0),
                grew.get("udp_refused_bad_mac", 0),
                grew.get("udp_refused_stale", 0),
            ) == (1, 2, 1)

        wait_until(counted, 10, "the forged and replayed datagrams to be refused")
    for name in sorted(secured.addresses):
        assert secured.states(name) == secured.all_up(), f"{name} took a forged leave"
    assert secured.serving("c", r=3)


def test_a_tampered_frame_ends_its_connection_only(secured: SecureCluster) -> None:
    """A record whose MAC fails (here a flipped bit, as a man in the middle would make) closes
    that connection; the node serves every other client."""
    from ring.net.auth import ClientHandshake
    from ring.net.codec import FrameDecoder, client_hello, encode_frame, new_packer

    with secured.client("b") as client:
        client.put("k1", "v1")
    host, port = secured.addresses["b"].rsplit(":", 1)
    before = secured.refusals("b").get("auth_failed_bad_record", 0)
    packer, decoder = new_packer(), FrameDecoder()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        handshake = ClientHandshake((SECRET,), client_hello("ringkv"))
        sock.sendall(encode_frame(packer, handshake.hello))
        answers: list[object] = []
        while not answers:
            answers = decoder.feed(sock.recv(65536))
        proof, session = handshake.finish(answers[0])  # type: ignore[arg-type]
        sock.sendall(encode_frame(packer, proof))
        record = bytearray(session.sealer.seal(encode_frame(packer, [1, "del", {"key": b"k1"}])))
        record[-1] ^= 1
        sock.sendall(bytes(record))
        assert sock.recv(65536) == b"", "the node should close the connection"
    wait_until(
        lambda: secured.refusals("b").get("auth_failed_bad_record", 0) == before + 1,
        10,
        "the bad record to be counted",
    )
    with secured.client("b") as client:
        assert client.get("k1", r=3) == b"v1", "the tampered delete was acted on"


def test_ringd_refuses_a_missing_or_empty_secret_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    large = tmp_path / "large"
    large.write_bytes(b"s" * (64 * 1024 + 1))  # not a secret file: refused, not truncated
    for path, says in (
        (tmp_path / "missing", "cannot read"),
        (empty, "is empty"),
        (large, "is larger than 64 KiB"),
    ):
        argv = ["--name", "x", "--data", str(tmp_path / "d"), "--new-cluster"]
        argv += ["--listen", "127.0.0.1:0", "--secret-file", str(path)]
        done = subprocess.run(
            [sys.executable, "-m", "ring.cli.ringd", *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2 and says in done.stderr, done
        assert not (tmp_path / "d").exists(), "nothing is created before the settings are good"


def test_ringd_warns_of_a_secret_file_others_may_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ring.cli import ringd

    private, shared = tmp_path / "private", tmp_path / "shared"
    for path in (private, shared):
        secret_file(path, SECRET)
    private.chmod(0o600)
    shared.chmod(0o644)
    argv = ["--name", "x", "--data", str(tmp_path / "d"), "--new-cluster"]
    ok = ringd.load_settings([*argv, "--secret-file", str(private)])
    assert ok.security.exposed_files == ()
    exposed = ringd.load_settings([*argv, "--secret-file", str(shared)])
    assert exposed.security.exposed_files == (str(shared),)
    with caplog.at_level("WARNING", logger="ringd"):
        ringd._warn_security(exposed)
    assert f"the secret file {shared} may be read by other users" in caplog.text
