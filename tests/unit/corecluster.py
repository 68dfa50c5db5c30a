"""Node cores wired together through an in-memory list of messages (h11's ConnectionPair idea):
no loop, no sockets, virtual time. The first node founds the cluster; the others join it.

``hold`` keeps messages to a node in ``held`` instead of delivering them (a slow or partitioned
replica that is still up in everyone's view); ``release`` delivers them.
"""

from __future__ import annotations

import random
from typing import Any

from ring.core import messages as m
from ring.core.node import Node, NodeConfig
from ring.storage import MemoryStorage


class Cluster:
    def __init__(
        self,
        names: list[str],
        *,
        n: int = 3,
        r: int = 2,
        w: int = 2,
        seed: int = 1,
        compose: bool = False,
    ):
        # compose: docker-compose's layout, the first node founds with the others as its seeds
        # and every other node has the rest as seeds (default: the others seed with the first).
        self.compose = compose
        self.rng = random.Random(seed)
        self.now = 1_000_000
        self.storage = {name: MemoryStorage() for name in names}
        self.down: set[str] = set()
        self.queue: list[Any] = []
        self.replies: dict[int, m.Reply] = {}
        self.next_req = 0
        self.nodes: dict[str, Node] = {}
        self.holding: set[str] = set()  # nodes whose incoming peer messages are held
        self.held: list[tuple[str, m.Send]] = []
        self.logs: list[tuple[str, m.Log]] = []
        self.names = names
        self.cfg = dict(n=n, r=r, w=w, partitions=64, request_timeout_ms=500)
        for name in names:
            self.start(name)

    def start(self, name: str, incarnation: int = 0) -> None:
        first = name == self.names[0]
        if self.compose:
            seeds = tuple(f"{x}:1" for x in self.names if x != name)
        else:
            seeds = () if first else (f"{self.names[0]}:1",)
        cfg = NodeConfig(name=name, address=f"{name}:1", seeds=seeds, new_cluster=first, **self.cfg)
        node = Node(cfg, self.storage[name], now_ms=self.now, rng=self.rng, incarnation=incarnation)
        self.nodes[name] = node
        self.down.discard(name)
        self.queue += [(name, e) for e in node.start(self.now)]

    def crash(self, name: str) -> None:
        self.down.add(name)

    def _deliver(self) -> None:
        while self.queue:
            src, eff = self.queue.pop(0)
            if isinstance(eff, m.Reply):
                self.replies[eff.req_id] = eff
            elif isinstance(eff, m.Log):
                self.logs.append((src, eff))
            elif isinstance(eff, m.Send) and eff.dest in self.holding:
                self.held.append((src, eff))
            elif isinstance(eff, m.Send):
                if eff.dest not in self.down and src not in self.down:
                    msg = m.from_wire(m.to_wire(eff.msg))  # through the wire form, as the shell
                    out = self.nodes[eff.dest].handle(m.PeerMessage(src, msg), self.now)
                    self.queue += [(eff.dest, e) for e in out]
            elif isinstance(eff, m.SendDatagram):
                dest = eff.address.split(":")[0]
                if dest not in self.down and src not in self.down:
                    msg = m.from_wire(m.to_wire(eff.msg))
                    out = self.nodes[dest].handle(m.Datagram(f"{src}:1", msg), self.now)
                    self.queue += [(dest, e) for e in out]

    def run(self, ms: int) -> None:
        end = self.now + ms
        while self.now < end:
            self.now += 20
            for name, node in self.nodes.items():
                if name not in self.down:
                    self.queue += [(name, e) for e in node.handle(m.Tick(), self.now)]
            self._deliver()

    def hold(self, name: str) -> None:
        self.holding.add(name)

    def release(self, name: str) -> None:
        self.holding.discard(name)
        keep = [(s, e) for s, e in self.held if e.dest != name]
        self.queue += [(s, e) for s, e in self.held if e.dest == name]
        self.held = keep
        self._deliver()

    def handle(self, name: str, event: Any) -> list[Any]:
        """Feed ``event`` to ``name``; its effects are delivered, and returned."""
        out = self.nodes[name].handle(event, self.now)
        self.queue += [(name, e) for e in out]
        self._deliver()
        return out

    def send(self, via: str, op: str, **args: Any) -> int:
        """Send a request without waiting; its reply lands in ``replies``."""
        self.next_req += 1
        self.handle(via, m.ClientRequest(self.next_req, op, args))
        return self.next_req

    def request(self, via: str, op: str, **args: Any) -> m.Reply:
        req = self.send(via, op, **args)
        for _ in range(200):
            if req in self.replies:
                return self.replies.pop(req)
            self.run(20)
        raise AssertionError(f"no reply to {op} {args}")

    def converged(self) -> bool:
        """Membership agrees everywhere, and the ownership table has settled: every live node
        has the same table, it names every node, and no partition is moving."""
        live = [node for name, node in self.nodes.items() if name not in self.down]
        if not all(
            {x.name: x.state for x in node.membership.members()}
            == {n: ("down" if n in self.down else "up") for n in self.names}
            for node in live
        ):
            return False
        tables = [node.table for node in live]
        if any(t is None for t in tables):
            return False
        epochs = {t.epoch for t in tables if t is not None}
        t = tables[0]
        assert t is not None
        return (
            len(epochs) == 1 and set(t.members()) == set(self.names) and not t.transfers_pending()
        )

    def settle(self, limit_ms: int = 20_000) -> None:
        waited = 0
        while not self.converged():
            assert waited < limit_ms, "membership did not converge"
            self.run(100)
            waited += 100
