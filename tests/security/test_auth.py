"""The cluster secret's building blocks (``ring.net.auth``), without sockets: the handshake, the
record layer, datagram sealing with its replay window, and reading secret files.

What users rely on: only a side that knows the secret completes a handshake, in either role and
with either of a rotation's two secrets; nothing recorded from one connection is accepted on
another or replayed on the same; every tampered, reordered, replayed or dropped record or
datagram is refused.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ring.errors import InvalidInput, ProtocolError
from ring.net.auth import (
    DATAGRAM_MAX_AGE_MS,
    PLACEHOLDER_SECRET,
    RECORD_MAX,
    REPLAY_WINDOW,
    AuthenticationFailed,
    AuthError,
    ClientHandshake,
    GossipAuth,
    Opener,
    RefusalLog,
    Sealer,
    ServerHandshake,
    Session,
    read_secret_file,
    secret_of,
    weak_secret,
)
from ring.net.codec import client_hello, server_hello

NEW, OLD, OTHER = b"new-secret-0123456789", b"old-secret-0123456789", b"other-secret-0123456"


def handshake(
    client: tuple[bytes, ...], server: tuple[bytes, ...], hello: dict[str, object] | None = None
) -> tuple[Session, Session]:
    """Run a whole handshake between a client holding ``client`` and a node holding ``server``;
    returns (client session, server session) or raises what a side raises."""
    c = ClientHandshake(client, hello or client_hello("ringkv"))
    s = ServerHandshake(server)
    answer = s.answer(c.hello, server_hello("ringkv", "n1"))
    proof, client_session = c.finish(answer, "n1")
    return client_session, s.verify(proof)


def talk(a: Session, b: Session) -> None:
    """Records sealed by one side open on the other, both ways, in order."""
    for sender, receiver in ((a, b), (b, a)):
        for n in (1, 5, 300):
            data = bytes(range(256))[:n] * 3
            assert receiver.opener.feed(sender.sealer.seal(data)) == data


ROTATION = {  # who holds what at each step of a rolling rotation
    "old only": (OLD,),
    "new and old": (NEW, OLD),
    "new only": (NEW,),
}


@pytest.mark.parametrize(
    ("client", "server"),
    [
        ("old only", "old only"),
        ("old only", "new and old"),
        ("new and old", "old only"),
        ("new and old", "new and old"),
        ("new and old", "new only"),
        ("new only", "new and old"),
        ("new only", "new only"),
    ],
)
def test_every_pair_of_a_rolling_rotation_interoperates(client: str, server: str) -> None:
    talk(*handshake(ROTATION[client], ROTATION[server]))


@pytest.mark.parametrize(("client", "server"), [("old only", "new only"), ("new only", "old only")])
def test_the_two_ends_of_a_rotation_do_not(client: str, server: str) -> None:
    with pytest.raises(AuthenticationFailed, match="authentication failed"):
        handshake(ROTATION[client], ROTATION[server])


def test_a_wrong_secret_fails_on_the_client_before_it_sends_anything() -> None:
    c = ClientHandshake((OTHER,), client_hello("ringkv"))
    answer = ServerHandshake((NEW,)).answer(c.hello, server_hello("ringkv", "n1"))
    with pytest.raises(AuthenticationFailed, match="secrets differ") as info:
        c.finish(answer, "node n1")
    assert isinstance(info.value, ProtocolError)  # ringctl exit 5


def test_a_client_with_a_secret_refuses_an_open_node() -> None:
    c = ClientHandshake((NEW,), client_hello("ringkv"))
    with pytest.raises(AuthenticationFailed, match="runs without a cluster secret"):
        c.finish(server_hello("ringkv", "n1"), "node n1")


def test_a_node_refuses_a_hello_without_a_nonce() -> None:
    with pytest.raises(AuthError, match="requires the cluster secret") as info:
        ServerHandshake((NEW,)).answer(client_hello("ringkv"), server_hello("ringkv", "n1"))
    assert info.value.reason == "no_secret"


def test_a_forged_proof_is_refused() -> None:
    c = ClientHandshake((NEW,), client_hello("ringkv"))
    s = ServerHandshake((NEW,))
    answer = s.answer(c.hello, server_hello("ringkv", "n1"))
    proof, _ = c.finish(answer)
    for bad in (
        {**proof, "proof": bytes(32)},
        {**proof, "key": 1},  # names a secret the node does not hold
        {**proof, "key": True},
        {"proof": "text"},
        [1, 2],
        # A reflection: the node's own proof sent back as the client's.
        {"proof": answer["proofs"][0], "key": 0},
    ):
        with pytest.raises(AuthError):
            s.verify(bad)
    assert isinstance(s.verify(proof), Session)


def test_a_recorded_client_proof_does_not_open_a_new_connection() -> None:
    """The node's fresh nonce makes every transcript new."""
    c = ClientHandshake((NEW,), client_hello("ringkv"))
    s1 = ServerHandshake((NEW,))
    proof, _ = c.finish(s1.answer(c.hello, server_hello("ringkv", "n1")))
    s2 = ServerHandshake((NEW,))
    s2.answer(c.hello, server_hello("ringkv", "n1"))  # the same client hello, replayed
    with pytest.raises(AuthError, match="wrong cluster secret"):
        s2.verify(proof)


def test_a_hello_changed_on_the_way_fails_the_proofs() -> None:
    """The proofs cover both hellos: a man in the middle that changes a field (here a peer's
    settings) makes the handshake fail instead of passing unnoticed."""
    hello = client_hello("ringkv", "node", "n2", settings={"n": 3, "partitions": 64})
    c = ClientHandshake((NEW,), hello)
    s = ServerHandshake((NEW,))
    tampered = {**c.hello, "settings": {"n": 1, "partitions": 64}}
    answer = s.answer(tampered, server_hello("ringkv", "n1"))
    with pytest.raises(AuthenticationFailed):
        c.finish(answer)
    # And a changed node answer (another name) fails the same way.
    c = ClientHandshake((NEW,), hello)
    answer = ServerHandshake((NEW,)).answer(c.hello, server_hello("ringkv", "n1"))
    with pytest.raises(AuthenticationFailed):
        c.finish({**answer, "name": "n9"})


def test_sessions_of_two_connections_do_not_share_keys() -> None:
    a_client, _ = handshake((NEW,), (NEW,))
    _, b_server = handshake((NEW,), (NEW,))
    with pytest.raises(AuthError, match="failed its MAC"):
        b_server.opener.feed(a_client.sealer.seal(b"put k v"))


def test_a_record_cannot_be_reflected_back_to_its_sender() -> None:
    client, _ = handshake((NEW,), (NEW,))
    with pytest.raises(AuthError):
        client.opener.feed(client.sealer.seal(b"hello"))


# --- records ------------------------------------------------------------------------------------


def pair() -> tuple[Sealer, Opener]:
    return Sealer(b"k" * 32), Opener(b"k" * 32)


def test_records_open_whatever_way_the_stream_is_cut() -> None:
    sealer, opener = pair()
    messages = [bytes([i]) * (i * 37 + 1) for i in range(20)]
    stream = b"".join(sealer.seal(m) for m in messages)
    for step in (1, 3, 64, len(stream)):
        _, opener = pair()
        got = b"".join(opener.feed(stream[i : i + step]) for i in range(0, len(stream), step))
        assert got == b"".join(messages)


def test_a_buffer_longer_than_a_record_is_split_and_joined() -> None:
    sealer, opener = pair()
    data = bytes(range(256)) * (RECORD_MAX // 256 * 2 + 3)
    sealed = sealer.seal(data)
    assert sealer.seq == 3
    assert opener.feed(sealed) == data


@pytest.mark.parametrize("where", ["length", "body", "tag"])
def test_a_flipped_bit_anywhere_in_a_record_is_refused(where: str) -> None:
    sealer, opener = pair()
    sealed = bytearray(sealer.seal(b"x" * 100))
    at = {"length": 3, "body": 50, "tag": len(sealed) - 1}[where]
    sealed[at] ^= 1
    with pytest.raises(AuthError):
        opener.feed(bytes(sealed) + b"\0" * 200)  # enough bytes for any length it now claims


def test_reordered_replayed_and_dropped_records_are_refused() -> None:
    sealer = Sealer(b"k" * 32)
    one, two, three = (sealer.seal(m) for m in (b"one", b"two", b"three"))
    for stream in (two + one, one + one, one + three):
        opener = Opener(b"k" * 32)
        with pytest.raises(AuthError, match="failed its MAC"):
            opener.feed(stream)


def test_a_record_length_over_the_limit_is_refused_before_buffering() -> None:
    opener = Opener(b"k" * 32)
    with pytest.raises(AuthError, match="not valid"):
        opener.feed((RECORD_MAX + 1).to_bytes(4, "big"))
    with pytest.raises(AuthError, match="not valid"):
        Opener(b"k" * 32).feed(b"\0\0\0\0")


# --- datagrams ----------------------------------------------------------------------------------


def test_datagrams_open_once_and_in_any_order_within_the_window() -> None:
    sender, receiver = GossipAuth((NEW,), "ringkv"), GossipAuth((NEW,), "ringkv")
    now = 1_000_000
    sealed = [sender.seal(b"body %d" % i, now) for i in range(10)]
    for i in (3, 0, 9, 1, 2, 8, 4, 7, 5, 6):
        assert receiver.open(sealed[i], now) == b"body %d" % i
    for i in range(10):
        with pytest.raises(AuthError) as info:
            receiver.open(sealed[i], now)
        assert info.value.reason == "replay"


def test_a_datagram_older_than_the_window_is_refused() -> None:
    sender, receiver = GossipAuth((NEW,), "ringkv"), GossipAuth((NEW,), "ringkv")
    first = sender.seal(b"first", 0)
    for _ in range(REPLAY_WINDOW):
        receiver.open(sender.seal(b"later", 0), 0)
    with pytest.raises(AuthError) as info:
        receiver.open(first, 0)
    assert info.value.reason == "replay"


def test_a_stale_or_future_datagram_is_refused() -> None:
    sender, receiver = GossipAuth((NEW,), "ringkv"), GossipAuth((NEW,), "ringkv")
    now = 10_000_000
    for stamp in (now - DATAGRAM_MAX_AGE_MS - 1, now + DATAGRAM_MAX_AGE_MS + 1):
        with pytest.raises(AuthError) as info:
            receiver.open(sender.seal(b"x", stamp), now)
        assert info.value.reason == "stale"
    assert receiver.open(sender.seal(b"x", now - DATAGRAM_MAX_AGE_MS), now) == b"x"


def test_unsigned_forged_and_tampered_datagrams_are_refused() -> None:
    receiver = GossipAuth((NEW,), "ringkv")
    now = 5_000_000
    cases = {
        "unsigned": [b"\x93\x14\x01\xa2n2", b"", b"\xc1"],
        "bad_mac": [
            GossipAuth((OTHER,), "ringkv").seal(b"x", now),  # another secret
            GossipAuth((NEW,), "another-cluster").seal(b"x", now),  # another cluster
        ],
    }
    good = bytearray(GossipAuth((NEW,), "ringkv").seal(b"body", now))
    good[-20] ^= 1  # a flipped bit in the body
    cases["bad_mac"].append(bytes(good))
    for reason, datagrams in cases.items():
        for data in datagrams:
            with pytest.raises(AuthError) as info:
                receiver.open(data, now)
            assert info.value.reason == reason, data


def test_datagrams_cross_every_step_of_a_rotation() -> None:
    now = 7_000_000
    for a, b in itertools.permutations(ROTATION, 2):
        if {a, b} == {"old only", "new only"}:
            continue
        sender, receiver = GossipAuth(ROTATION[a], "ringkv"), GossipAuth(ROTATION[b], "ringkv")
        assert receiver.open(sender.seal(b"x", now), now) == b"x", (a, b)
    with pytest.raises(AuthError):
        GossipAuth((NEW,), "ringkv").open(GossipAuth((OLD,), "ringkv").seal(b"x", now), now)


# --- secrets and logs --------------------------------------------------------------------------


def test_secrets_are_stripped_and_must_not_be_empty(tmp_path: Path) -> None:
    assert secret_of("  s3cret\n") == b"s3cret" == secret_of(b"s3cret")
    path = tmp_path / "secret"
    path.write_bytes(b"\n s3cret \n\n")
    assert read_secret_file(str(path)) == b"s3cret"
    path.write_bytes(b" \n\t")
    with pytest.raises(InvalidInput, match="is empty"):
        read_secret_file(str(path))
    with pytest.raises(InvalidInput, match=r"cannot read --secret-file .*missing"):
        read_secret_file(str(tmp_path / "missing"))
    with pytest.raises(InvalidInput, match="str or bytes"):
        secret_of(42)  # type: ignore[arg-type]


def test_short_and_placeholder_secrets_are_weak() -> None:
    assert weak_secret(b"x" * 15) and weak_secret(PLACEHOLDER_SECRET)
    assert not weak_secret(b"x" * 16) and not weak_secret(NEW)


def test_refusals_are_logged_once_a_minute_per_source() -> None:
    log = RefusalLog(every_s=60)
    assert log.due("10.0.0.1", now=0) == 0
    assert log.due("10.0.0.1", now=1) is None
    assert log.due("10.0.0.2", now=2) == 0
    assert log.due("10.0.0.1", now=30) is None
    assert log.due("10.0.0.1", now=61) == 2  # two more were refused meanwhile


def test_refusals_from_many_sources_are_logged_at_most_ten_times_a_minute() -> None:
    """Spoofed datagram sources cost nothing: however many there are, at most 10 lines a minute,
    then one line that sums up the rest."""
    log = RefusalLog(every_s=60)
    lines = sum(
        log.due(f"udp 10.0.{i // 256}.{i % 256}", now=i / 1000) is not None for i in range(5000)
    )
    assert lines == 10
    assert log.summary(now=30) is None  # not before the minute is over
    assert log.summary(now=61) == (4990, 4990)
    assert log.summary(now=62) is None  # said once
    assert log.due("udp 10.9.9.9", now=62) == 0  # a new minute: lines again
    assert log.due("udp 10.0.0.1", now=63) == 0  # its first line was at 0, a minute ago


def test_a_node_refuses_its_own_datagrams_sent_back_to_it() -> None:
    """Someone who reflects a node's gossip back at it (its MAC is good) gets it refused."""
    node, peer = GossipAuth((NEW,), "ringkv"), GossipAuth((NEW,), "ringkv")
    now = 1_000_000
    datagram = node.seal(b"ping", now)
    assert peer.open(datagram, now) == b"ping"
    with pytest.raises(AuthError) as refused:
        node.open(datagram, now)
    assert refused.value.reason == "own"
