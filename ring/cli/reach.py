"""Where ``ringctl`` reaches each member of a cluster.

A member's status lists the address it advertises to its peers, which a client outside their
network may not reach (docker-compose's ``node1:7070`` from the host, say), while the addresses
the user gave with ``--nodes`` (published ports) do reach the members they point at. So a
member that is one of ``--nodes`` is reached there, any other at its advertised address.
"""

from __future__ import annotations

from ring.net.codec import parse_addresses

PROBE_TIMEOUT_S = 2.0


def given_addresses(nodes: str) -> dict[str, str]:
    """Member name -> the ``--nodes`` address it answers at (those that answer)."""
    import ring

    out: dict[str, str] = {}
    for address in parse_addresses(nodes):
        try:
            with ring.connect(address, timeout=PROBE_TIMEOUT_S) as client:
                if client.node:
                    out.setdefault(client.node, address)
        except (ring.RingError, OSError):
            continue
    return out


def address_of(name: str, advertised: str, given: dict[str, str]) -> str:
    return given.get(name) or advertised
