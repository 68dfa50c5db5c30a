"""Group commit in the real shell: a real ``Runtime`` under uvloop on 127.0.0.1, a real one-node
``Node`` (N=R=W=1), over a ``GroupCommitStorage`` whose base store is a spy.

What a user relies on: an acknowledgement never reaches the client before the write it
acknowledges is in the base store (with and without ``sync``); with ``sync`` a slow fsync does
not stop the node from answering other work, and replies wait behind it in order; a failed
write acknowledges nothing and stops the node.

The client socket here is one the event loop never reads: the test alone consumes its bytes, so
a frame that arrived stays visible to ``select`` (from any thread) until the test reads it.
"""

from __future__ import annotations

import dataclasses
import random
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from ring.cli.ringd import STORE
from ring.core import messages
from ring.core.layout import DATA
from ring.core.membership import Ack, Ping
from ring.core.node import Node, NodeConfig
from ring.net.codec import FrameDecoder, client_hello, encode_frame, new_packer, unpack
from ring.net.runtime import Runtime
from ring.storage import MemoryStorage
from ring.storage.group import GroupCommitStorage
from tests.net.fakecore import uvloop_test, wait_for

KEY = b"k"


class SpyStorage(MemoryStorage):
    """A base store that calls ``on_write(keys)`` inside every write, in the writing thread,
    before the write takes effect (it may block, or raise like a full disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_write: Callable[[list[bytes]], None] | None = None

    def write(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        *,
        sync: bool = False,
    ) -> None:
        puts, deletes = list(puts), list(deletes)
        if self.on_write is not None:
            self.on_write([k for k, _ in puts] + deletes)
        super().write(puts, deletes, sync=sync)


class Client:
    """A client connection the event loop never touches (see the module docstring)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.decoder = FrameDecoder(1 << 30)
        self.frames: list[Any] = []
        self.packer = new_packer()

    def send(self, obj: Any) -> None:
        self.sock.sendall(encode_frame(self.packer, obj, 1 << 30))

    def readable(self, timeout: float = 0) -> bool:
        """Whether bytes (or EOF) wait in the socket, or arrive within ``timeout`` seconds;
        consumes nothing, callable from any thread."""
        return bool(select.select([self.sock], [], [], timeout)[0])

    async def recv(self, timeout: float = 15.0) -> Any:
        while not self.frames:
            await wait_for(lambda: self.readable(), timeout)
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("the node closed the connection")
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    async def eof(self, timeout: float = 5.0) -> list[Any]:
        """Read until the node closes the connection; return the frames that came first."""
        while True:
            await wait_for(lambda: self.readable(), timeout)
            data = self.sock.recv(1 << 20)
            if not data:
                frames, self.frames = self.frames, []
                return frames
            self.frames += self.decoder.feed(data)

    def close(self) -> None:
        self.sock.close()


async def start_solo(
    base: SpyStorage, *, sync: bool
) -> tuple[Runtime, GroupCommitStorage, int, list[BaseException]]:
    """A one-node cluster that serves at once, its storage grouped over ``base``."""
    grouped = GroupCommitStorage(base, sync=sync)
    errors: list[BaseException] = []
    runtime = Runtime("solo", tick_ms=5, commit=grouped.start_commit, on_commit_error=errors.append)
    port = await runtime.listen("127.0.0.1", 0)
    # A node without seeds founds its cluster (the field exists once the core has it).
    founding = {f.name: True for f in dataclasses.fields(NodeConfig) if f.name == "new_cluster"}
    config = NodeConfig(
        name="solo", address=f"127.0.0.1:{port}", n=1, r=1, w=1, tick_ms=5, **founding
    )
    node = Node(config, grouped, now_ms=runtime.clock(), rng=random.Random(7))
    await runtime.start(node)
    return runtime, grouped, port, errors


def requests_seen(runtime: Runtime) -> list[str]:
    """The ops of the client requests the core has handled so far (filled in as it goes)."""
    core = runtime.core
    assert core is not None
    handle = core.handle
    ops: list[str] = []

    def recording(event: Any, now_ms: int) -> list[Any]:
        effects = handle(event, now_ms)
        if type(event) is messages.ClientRequest:
            ops.append(event.op)
        return effects

    core.handle = recording  # type: ignore[method-assign]
    return ops


async def hello(client: Client) -> None:
    client.send(client_hello("ringkv"))
    assert (await client.recv())["name"] == "solo"


def put(req_id: int, value: bytes = b"v") -> list[Any]:
    return [req_id, "put", {"key": KEY, "value": value}]


@pytest.mark.parametrize("sync", [False, True], ids=["default", "sync"])
@uvloop_test
async def test_no_acknowledgement_reaches_the_client_before_its_write(sync: bool) -> None:
    base = SpyStorage()
    runtime, grouped, port, _ = await start_solo(base, sync=sync)
    client = Client(port)
    loop_thread = threading.current_thread().name
    try:
        await hello(client)
        seen: list[tuple[bool, str]] = []  # at the write of KEY: (ack readable?, thread)

        def spy(keys: list[bytes]) -> None:
            if DATA + KEY in keys:
                thread = threading.current_thread().name
                # On the loop's thread nothing else runs meanwhile: look once. From the worker,
                # give an ack that the loop would send too early the time to arrive.
                patience = 0 if thread == loop_thread else 0.2
                seen.append((client.readable(patience), thread))

        base.on_write = spy
        client.send(put(1))
        # Nothing reads the client socket until the write was seen or the ack is there: an
        # ack sent first is then still in the socket when the spy looks, whatever the thread.
        await wait_for(lambda: bool(seen) or client.readable())
        assert seen, "the acknowledgement arrived and the write was not made"
        ack_was_there, thread = seen[0]
        assert not ack_was_there, "the acknowledgement left before its write"
        reply = await client.recv()
        assert reply[:2] == [1, None]
        assert base.get(DATA + KEY) is not None  # the ack came after the key was stored
        assert (thread == loop_thread) is not sync, f"sync={sync}, written in thread {thread}"
    finally:
        client.close()
        await runtime.shutdown()
        grouped.close()


@uvloop_test
async def test_a_blocked_fsync_does_not_stall_the_loop_and_replies_wait_behind_it() -> None:
    base = SpyStorage()
    runtime, grouped, port, _ = await start_solo(base, sync=True)
    ops = requests_seen(runtime)
    writer, reader = Client(port), Client(port)
    gossip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gossip.bind(("127.0.0.1", 0))
    gossip.setblocking(False)
    entered, release = threading.Event(), threading.Event()

    def block(keys: list[bytes]) -> None:
        if DATA + KEY in keys:
            entered.set()
            release.wait(10)  # a disk that takes its time (bounded, should the test fail)

    try:
        await hello(writer)
        await hello(reader)
        base.on_write = block
        writer.send(put(1))
        await wait_for(entered.is_set)
        # The loop still answers: a gossip ping gets its ack while the fsync is blocked.
        ping = Ping(9, "prober", [])
        gossip.sendto(new_packer().pack(messages.to_wire(ping)), ("127.0.0.1", port))
        await wait_for(lambda: bool(select.select([gossip], [], [], 0)[0]))
        ack = messages.from_wire(unpack(gossip.recv(65536)))
        assert type(ack) is Ack and ack.seq == 9 and ack.src_name == "solo"
        # A read of the key on another connection sees the write in flight, but its reply
        # waits behind the put's ack: it must not show data that is not yet durable.
        reader.send([2, "get", {"key": KEY}])
        # Once the node has answered it and the flush step has taken the reply:
        await wait_for(lambda: "get" in ops and not any(c.out for c in runtime.connections))
        assert not writer.readable() and not reader.readable()
        assert not release.is_set() and base.get(DATA + KEY) is None
        release.set()
        assert (await writer.recv())[:2] == [1, None]
        assert base.get(DATA + KEY) is not None
        assert await reader.recv() == [2, None, b"v"]
    finally:
        release.set()
        gossip.close()
        writer.close()
        reader.close()
        await runtime.shutdown()
        grouped.close()


@pytest.mark.parametrize("sync", [False, True], ids=["default", "sync"])
@uvloop_test
async def test_a_failed_write_acknowledges_nothing_and_stops_serving(
    sync: bool, caplog: pytest.LogCaptureFixture
) -> None:
    base = SpyStorage()
    runtime, grouped, port, errors = await start_solo(base, sync=sync)
    client, other = Client(port), Client(port)

    def disk_full(keys: list[bytes]) -> None:
        if DATA + KEY in keys:
            raise OSError(28, "No space left on device")

    try:
        await hello(client)
        await hello(other)
        base.on_write = disk_full
        # Pipelined: the first put fails to commit, and nothing after it is acknowledged.
        client.send(put(1))
        await wait_for(lambda: bool(errors))
        client.send(put(2, b"w"))
        other.send([3, "status", {}])
        # The ack of put 1, and the answers to what came after, are made and dropped.
        await wait_for(lambda: runtime.counters.get("buffers_unsent") == 3)
        assert isinstance(errors[0], OSError) and runtime.commit_error is errors[0]
        assert runtime.counters["commit_errors"] == 1 and runtime.stopped
        assert "cannot write to the data directory" in caplog.text
    finally:
        await runtime.shutdown()  # does not wait: nothing is left to finish
        grouped.close()
    try:
        assert await client.eof() == [] and await other.eof() == []  # no answer, only EOF
        assert base.get(DATA + KEY) is None
    finally:
        client.close()
        other.close()


# ringd's serve() over a base store whose writes of KEY fail, in a process of its own.
RINGD_WITH_A_FAILING_DISK = """
import asyncio, sys
import uvloop
from ring.cli.ringd import SETTINGS, load_settings, serve
from ring.storage import MemoryStorage

class FailingDisk(MemoryStorage):
    def write(self, puts, deletes=(), *, sync=False):
        puts = list(puts)
        if any(k == b"dk" for k, _ in puts):
            raise OSError(5, "Input/output error")
        super().write(puts, deletes, sync=sync)

argv = ["--name", "solo", "--data", sys.argv[1], "--listen", "127.0.0.1:0", "--n", "1"]
argv += ["--new-cluster"] if "new_cluster" in SETTINGS else []
with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    sys.exit(runner.run(serve(load_settings(argv, {}), FailingDisk())))
"""


def test_ringd_exits_with_4_when_a_write_fails(tmp_path: Path) -> None:
    assert DATA + KEY == b"dk"
    out = tmp_path / "ringd.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-c", RINGD_WITH_A_FAILING_DISK, str(tmp_path)],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while "listening on" not in (text := out.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.02)
        host, port = text.split("listening on ")[1].split()[0].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            packer, decoder = new_packer(), FrameDecoder(1 << 30)
            sock.sendall(encode_frame(packer, client_hello("ringkv"), 1 << 30))
            assert decoder.feed(sock.recv(65536))[0]["name"] == "solo"
            sock.sendall(encode_frame(packer, put(1), 1 << 30))
            frames: list[Any] = []
            while data := sock.recv(65536):  # until the node closes the connection
                frames += decoder.feed(data)
        assert frames == [], "an acknowledgement of a write that failed"
        assert proc.wait(15) == STORE
        text = out.read_text()
        assert "cannot write to the data directory" in text and "unusable" in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
