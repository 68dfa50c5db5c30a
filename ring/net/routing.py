"""Which node a smart client sends a request to: a replica of its key, by the ownership table.

What ``ring.connect`` and ``ring.aio.connect`` share when ``smart`` (the default). No IO here:
:class:`Routes` holds the table a node answered the ``ring`` op with (``{"table": true}``),
the members the client could not reach, and the listed addresses members answered at; the
clients carry out the IO. The rules:

* **Correctness never depends on the table.** Any node takes any request (a non-replica
  forwards a write and coordinates a read from the replicas), so a stale table, a member that
  cannot be reached or a table that cannot be had only costs the hop a smart client saves:
  the request then goes the plain way, to the client's connected node, with its failover.
* **The table is fetched lazily** with the first keyed request, and checked again at most every
  :data:`TABLE_CHECK_S` (the node answers with only the epoch when it is unchanged), at once
  after a routed request failed. A node that does not serve yet, or an older node that knows no
  ``table`` argument, gives none: the client stays plain until the next check.
* **A request goes to an owner of its key's partition**: the node the client is connected to
  when it is one (so on a cluster of N nodes a smart client sends what a plain one sends),
  else the first owner that is up or suspect in the answering node's view and that the client
  has not failed to reach lately: for a write that is
  a replica that coordinates it (only the owners do: ``ring.core.coordinator``), for a read a
  replica that answers it from its own copy, asking N-1 peers instead of N.
* **Where a member is reached**: at the listed address it answered at (the client learns the
  name from the node's hello), else at the address it advertises to its peers, which a client
  outside their network may not reach (docker-compose's ``node1:7070``). A member that cannot be
  reached is passed over for :data:`DOWN_S`, doubled after each further failure up to
  :data:`MAX_DOWN_S`; its requests go the plain way meanwhile.
"""

from __future__ import annotations

from typing import Any

from ring.core.table import partition_of
from ring.errors import ProtocolError

TABLE_CHECK_S = 1.0  # how often a client asks whether the ownership table changed
DOWN_S = 1.0  # how long a member that could not be reached is passed over, at first
MAX_DOWN_S = 30.0
CONNECT_TIMEOUT_S = 1.0  # a routed connection that takes longer is not worth its hop
MAX_LINKS = 64  # connections a client keeps to members (beyond: the plain way)
SERVING = ("up", "suspect")


class Routes:
    """The routing state of one client; ``now`` is a monotonic time in seconds."""

    def __init__(self) -> None:
        self.epoch: int | None = None  # None: no table (the client sends the plain way)
        self.partitions = 0
        self.owners: list[tuple[str, ...]] = []
        self.advertised: dict[str, str] = {}
        self.serving: set[str] = set()
        self.given: dict[str, str] = {}  # member name -> the listed address it answered at
        self.down: dict[str, tuple[float, float]] = {}  # name -> (passed over until, backoff)
        self.checked_at: float | None = None

    def due(self, now: float) -> bool:
        """Time to ask for the table (or whether it changed)."""
        return self.checked_at is None or now - self.checked_at >= TABLE_CHECK_S

    def request_args(self) -> dict[str, Any]:
        """The arguments of the ``ring`` op that fetches the table (just its epoch when it is the
        one we hold)."""
        args: dict[str, Any] = {"table": True}
        if self.epoch is not None:
            args["since"] = self.epoch
        return args

    def expire(self) -> None:
        """Check the table with the next request (a routed request failed)."""
        self.checked_at = None

    def checked(self, now: float) -> None:
        """A check was made (or failed: no retry before the next check is due)."""
        self.checked_at = now

    def update(self, info: Any, partitions: int | None = None) -> None:
        """Take a ``ring`` answer. Without a table in it the client goes the plain way."""
        if not isinstance(info, dict):
            raise ProtocolError("a ring answer is a map")
        table = info.get("table")
        if not isinstance(table, dict):
            self.epoch = None
            return
        epoch = table.get("epoch")
        if not isinstance(epoch, int):
            raise ProtocolError("a ring table has an integer epoch")
        if "owners" not in table:
            if epoch != self.epoch:  # "unchanged" of a table we do not hold: ask again
                self.epoch = None
            return
        names, addresses = table.get("names"), table.get("addresses")
        states, owners = table.get("states"), table.get("owners")
        if not (
            isinstance(names, list)
            and isinstance(addresses, list)
            and isinstance(states, list)
            and isinstance(owners, list)
            and len(names) == len(addresses) == len(states)
            and all(isinstance(x, str) for x in names + addresses + states)
            and owners
        ):
            raise ProtocolError("a ring table is malformed")
        try:
            lists = [tuple(names[i] for i in lst) for lst in owners]
        except (TypeError, IndexError):
            raise ProtocolError("a ring table names owners it does not list") from None
        self.partitions = len(lists)
        self.owners = lists
        self.advertised = {n: a for n, a in zip(names, addresses) if a}
        self.serving = {n for n, s in zip(names, states) if s in SERVING}
        self.epoch = epoch

    def owners_of(self, key: bytes) -> tuple[str, ...]:
        return self.owners[partition_of(key, self.partitions)] if self.epoch is not None else ()

    def target(self, key: bytes, now: float, connected: str | None = None) -> str | None:
        """The member to send a request for ``key`` to, or None for the plain way: the node
        the client is ``connected`` to when it is an owner (no hop to save), else the first
        owner that serves and was not failed to reach lately."""
        if self.epoch is None:
            return None
        owners = self.owners[partition_of(key, self.partitions)]
        if connected in owners:
            return connected
        down = self.down
        for name in owners:
            if name in self.serving and (name not in down or down[name][0] <= now):
                return name
        return None

    def address_of(self, name: str) -> str | None:
        return self.given.get(name) or self.advertised.get(name)

    def answered(self, name: str, address: str) -> None:
        """A listed address answered as member ``name``."""
        self.given.setdefault(name, address)

    def reached(self, name: str) -> None:
        self.down.pop(name, None)

    def unreachable(self, name: str, now: float) -> None:
        """``name`` could not be reached (or failed a request): pass it over for a while, and
        check the table with the next request."""
        _, backoff = self.down.get(name, (0.0, DOWN_S / 2))
        backoff = min(backoff * 2, MAX_DOWN_S)
        self.down[name] = (now + backoff, backoff)
        self.expire()
