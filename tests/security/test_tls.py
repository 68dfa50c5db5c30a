"""TLS for client and peer connections, with a throwaway CA made by ``openssl`` (IP SAN
127.0.0.1).

Real ``ringd`` processes: a TLS cluster (alone, and with the cluster secret as well) replicates
over TLS links and serves ``ringctl --tls-ca`` end to end; a client without the CA, or trusting
another CA, is refused with a clear error (exit 5). The node's sockets with a fake core: a
certificate that does not name the host connected to is refused by the client; a peer that
shows no certificate is refused by the node, which keeps serving.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

import ring
import ring.aio
from ring.errors import Unavailable
from ring.net.auth import AuthenticationFailed, Security, client_context, server_context
from ring.net.codec import client_hello
from tests.net.fakecore import RawConn, start_node, uvloop_test, wait_for
from tests.security.pki import Pki, make_pki
from tests.security.secure import SecureCluster, ringctl, secret_file

SECRET = b"tls-and-secret-3e8a1c5f7b9d2e4a"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module", params=["tls", "tls+secret"])
def tls_cluster(
    request: pytest.FixtureRequest, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureCluster]:
    root = tmp_path_factory.mktemp(request.param.replace("+", "-"))
    extra = pki.ringd_flags()
    secret = None
    if request.param == "tls+secret":
        secret = SECRET
        extra += ["--secret-file", secret_file(root / "secret", SECRET)]
    cluster = SecureCluster(root, n=2, r=2, w=2, secret=secret, tls_ca=str(pki.ca), extra=extra)
    try:
        cluster.start("a", "b")
        cluster.heal()  # both up, and R=2 reads through each: the TLS links work both ways
        yield cluster
    finally:
        cluster.close()


def test_ringctl_works_end_to_end_over_tls(tls_cluster: SecureCluster, pki: Pki) -> None:
    nodes = ",".join(tls_cluster.addresses[n] for n in sorted(tls_cluster.addresses))
    flags = ["--nodes", nodes, "--tls-ca", str(pki.ca)]
    if tls_cluster.secret is not None:
        flags += ["--secret-file", str(tls_cluster.root / "secret")]
    done = ringctl(*flags, "put", "greeting", "hello over tls")
    assert done.returncode == 0, done.stderr
    done = ringctl(*flags, "get", "greeting")
    assert (done.returncode, done.stdout) == (0, "hello over tls"), done.stderr
    done = ringctl(*flags, "status", "--check")
    assert done.returncode == 0, done.stderr
    env = {"RINGKV_NODES": nodes, "RINGKV_TLS_CA": str(pki.ca)}
    if tls_cluster.secret is not None:
        env["RINGKV_SECRET_FILE"] = str(tls_cluster.root / "secret")
    done = ringctl("scan", "greet", env=env)
    assert (done.returncode, done.stdout) == (0, "greeting\thello over tls\n"), done.stderr
    # Without the CA, or trusting another one, nothing is read or written.
    rest = flags[2:-2] if tls_cluster.secret is None else flags[4:]
    done = ringctl("--nodes", nodes, *rest, "get", "greeting")
    assert done.returncode == 5 and "--tls-ca" in done.stderr, done
    done = ringctl("--nodes", nodes, "--tls-ca", str(pki.other_ca), *rest, "get", "greeting")
    assert done.returncode == 5 and "certificate verify failed" in done.stderr, done


def test_clients_replicate_over_tls(tls_cluster: SecureCluster, pki: Pki) -> None:
    async def main() -> None:
        secret = tls_cluster.secret
        addresses = ",".join(tls_cluster.addresses.values())
        async with await ring.aio.connect(addresses, secret=secret, tls_ca=str(pki.ca)) as db:
            await db.put_many({f"t{i}": f"v{i}" for i in range(50)}, w=2)
            assert await db.get_many([f"t{i}" for i in range(50)], r=2) == [
                b"v%d" % i for i in range(50)
            ]

    asyncio.run(main())
    with tls_cluster.client(smart=True) as client:
        assert client.get("t7", r=2) == b"v7"
        assert client.route_epoch is not None  # smart routing reached members over TLS too
        # The sync client's pipeline over non-blocking TLS sockets: large values, so that
        # sends are partial and reads end mid-record.
        big = {f"big{i}": bytes([i]) * 100_000 for i in range(20)}
        client.put_many(big, w=2)
        assert client.get_many(list(big), r=2) == list(big.values())
    if tls_cluster.secret is not None:
        with pytest.raises(AuthenticationFailed):
            ring.connect(tls_cluster.addresses["a"], tls_ca=str(pki.ca))


# --- the node's sockets with a fake core ----------------------------------------------------------


@uvloop_test
async def test_a_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    security = Security(
        server_ssl=server_context(str(pki.wrong_host_cert), str(pki.wrong_host_key), str(pki.ca))
    )
    runtime, core, address = await start_node("n1", security=security)
    try:
        with pytest.raises(Unavailable, match="certificate verify failed"):
            await ring.aio.connect(address, tls_ca=str(pki.ca), smart=False, timeout=5)
        with pytest.raises(Unavailable, match="--tls-ca"):  # a plain client is told why
            await ring.aio.connect(address, smart=False, timeout=5)
        assert core.requests == []
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_a_peer_must_show_a_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    security = Security(
        server_ssl=server_context(str(pki.cert), str(pki.key), str(pki.ca)),
        client_ssl=client_context(str(pki.ca), str(pki.cert), str(pki.key)),
    )
    runtime, core, address = await start_node("n1", security=security)
    try:
        host, port = address.rsplit(":", 1)
        # A TLS connection that trusts the CA but shows no certificate of its own, claiming
        # to be a node: refused at its hello.
        reader, writer = await asyncio.open_connection(
            host, int(port), ssl=client_context(str(pki.ca)), server_hostname=host
        )
        conn = RawConn(reader, writer)
        RawConn.opened.append(conn)
        conn.send(client_hello("ringkv", "node", "intruder", settings=None))
        refused = await conn.recv()
        assert refused[:2] == [None, "protocol"] and "certificate" in refused[2]
        assert runtime.counters["auth_failed_no_certificate"] == 1
        # A client needs none, and is served.
        async with await ring.aio.connect(address, tls_ca=str(pki.ca), smart=False) as client:
            await client.put("k", "v")
            assert await client.get("k") == b"v"
        # A node with a certificate from the CA is a peer: its link works.
        b, core_b, addr_b = await start_node("b", security=security)
        try:
            core.peers = {"b": addr_b}
            core_b.peers = {"n1": address}
            core_b.data[b"x"] = b"from b"
            async with await ring.aio.connect(address, tls_ca=str(pki.ca), smart=False) as client:
                assert await client._call("relay", {"to": "b", "key": b"x"}) == b"from b"
            await wait_for(lambda: "b" in runtime.peers.links if runtime.peers else False)
        finally:
            await b.shutdown()
    finally:
        await runtime.shutdown()


def test_settings_need_every_tls_file_and_a_readable_secret(tmp_path: Path) -> None:
    from ring.cli.ringd import ConfigError, load_settings

    pki = make_pki(tmp_path / "pki")
    base = ["--name", "x", "--data", str(tmp_path / "d")]
    s = load_settings([*base, *pki.ringd_flags()], {})
    assert isinstance(s.security.server_ssl, ssl.SSLContext) and not s.security.secrets
    cert, key, ca = str(pki.cert), str(pki.key), str(pki.ca)
    old = secret_file(tmp_path / "old", b"x" * 20)
    cases = {
        "--tls-key, --tls-ca": ["--tls-cert", cert],
        "cannot load the TLS certificate": ["--tls-cert", ca, "--tls-key", key, "--tls-ca", ca],
        "cannot read the TLS CA file": ["--tls-cert", cert, "--tls-key", key, "--tls-ca", "-"],
        "cannot load the TLS CA file": ["--tls-cert", cert, "--tls-key", key, "--tls-ca", old],
        "needs --secret-file": ["--old-secret-file", old],
        "the same secret": ["--secret-file", old, "--old-secret-file", old],
    }
    for says, flags in cases.items():
        with pytest.raises(ConfigError, match=says):
            load_settings([*base, *flags], {})
    env = {"RINGKV_SECRET_FILE": secret_file(tmp_path / "s", b"from-the-environment")}
    assert load_settings(base, env).security.secrets == (b"from-the-environment",)
    toml = tmp_path / "ringd.toml"
    toml.write_text(f'secret_file = "{tmp_path / "s"}"\nold_secret_file = "{tmp_path / "old"}"\n')
    s = load_settings([*base, "--config", str(toml)], {})
    assert s.security.secrets == (b"from-the-environment", b"x" * 20)
