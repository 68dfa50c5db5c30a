"""Bugs the fuzzers found in code this part of the work may not change, reported for its owners.

Each test states the right behaviour and is a strict xfail: it fails (XPASS) once the bug is
fixed, and then its entry in ``corenodes.KNOWN`` (which lets the core-level fuzzers pass over
it meanwhile) and the xfail mark go.
"""

from __future__ import annotations

import pytest

from ring.core import membership
from ring.core import messages as m
from tests.fuzz import corenodes


@pytest.mark.xfail(strict=True, raises=TypeError, reason="membership.parse_record: see docstring")
def test_a_membership_record_whose_state_is_not_a_string_is_ignored() -> None:
    """``membership.parse_record`` looks the state up in a dict before checking that it is a
    string, so a gossip update ``[name, address, incarnation, ["up"]]`` raises TypeError
    (unhashable) inside the core: the node drops the whole datagram, counts an internal error
    and logs it, instead of ignoring that one record as malformed. Fix: check
    ``isinstance(state, str)`` before ``state not in _RANK``."""
    assert membership.parse_record(["a", "a:1", 1, ["up"]]) is None


def test_the_known_bug_is_what_the_fuzzers_pass_over() -> None:
    """The fuzzers' allowance covers exactly the bug above, found through a real datagram."""
    c = corenodes.fresh_cluster()
    ping = membership.Ping(1, "b", [["b", "b:1", 0, ["up"]]], 0)
    with corenodes.caught() as errors:
        corenodes.deliver(c, "a", m.Datagram("b:1", ping))
    assert errors and all(corenodes.known(e) for e in errors)
    assert not corenodes.unexpected(errors)
