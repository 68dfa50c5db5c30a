"""A record replicated to N-1 peers is encoded once: the core hands the runtime one message
object for all of them, and the runtime reuses the frame it made for the previous send."""

from __future__ import annotations

from typing import Any

import pytest

from ring.core import messages as m
from ring.net import runtime as runtime_mod
from ring.net.runtime import Runtime
from tests.unit.corecluster import Cluster


class Peers:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, dest: str, address: str, frame: bytes) -> None:
        self.sent.append((dest, frame))


def test_a_put_replicates_one_message_object_encoded_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = Cluster(["a", "b", "c"])
    cluster.settle()
    out = cluster.nodes["a"].handle(
        m.ClientRequest(1, "put", {"key": b"k", "value": b"v" * 1000}), cluster.now
    )
    sends = [e for e in out if isinstance(e, m.Send) and isinstance(e.msg, m.ReplicaPut)]
    assert sorted(e.dest for e in sends) == ["b", "c"]
    assert sends[0].msg is sends[1].msg  # the core builds one message for every replica

    encoded: list[Any] = []
    encode = runtime_mod.encode_frame

    def counting(packer: Any, obj: Any, max_bytes: int = runtime_mod.MAX_FRAME_BYTES) -> bytes:
        encoded.append(obj)
        return encode(packer, obj, max_bytes)

    monkeypatch.setattr(runtime_mod, "encode_frame", counting)
    runtime = Runtime("a")
    peers = Peers()
    runtime.peers = peers  # type: ignore[assignment]
    runtime._apply(list(sends))
    assert len(encoded) == 1
    assert [d for d, _ in peers.sent] == [e.dest for e in sends]
    assert peers.sent[0][1] == peers.sent[1][1]
