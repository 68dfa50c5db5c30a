"""Bugs the fuzzers found in code this part of the work may not change, reported for its owners.

Each test states the right behaviour and is a strict xfail: it fails (XPASS) once the bug is
fixed, and then its entry in ``corenodes.KNOWN`` (which lets the core-level fuzzers pass over
it meanwhile) and the xfail mark go.
"""

from __future__ import annotations

import pytest

from ring.common import settings_mismatch
from ring.core import membership
from ring.core import messages as m
from tests.fuzz import corenodes
from tests.fuzz.strategies import nest


@pytest.mark.xfail(strict=True, raises=TypeError, reason="membership.parse_record: see docstring")
def test_a_membership_record_whose_state_is_not_a_string_is_ignored() -> None:
    """``membership.parse_record`` looks the state up in a dict before checking that it is a
    string, so a gossip update ``[name, address, incarnation, ["up"]]`` raises TypeError
    (unhashable) inside the core: the node drops the whole datagram, counts an internal error
    and logs it, instead of ignoring that one record as malformed. Fix: check
    ``isinstance(state, str)`` before ``state not in _RANK``."""
    assert membership.parse_record(["a", "a:1", 1, ["up"]]) is None


@pytest.mark.xfail(strict=True, raises=RecursionError, reason="common.settings_mismatch")
def test_a_join_whose_settings_nest_deeply_is_refused() -> None:
    """``ring.common.settings_mismatch`` puts ``repr`` of both values in its message. msgpack
    decodes values nested up to 1023 deep, and ``repr`` of one nested deeper than about 990
    exceeds Python's recursion limit: a gossip Join (or Sync) whose settings hold one raises
    RecursionError inside the core (isolated to that datagram, counted and logged as an internal
    error). (A peer's TCP hello with such settings raised it out of ``data_received`` too, until
    the security review made any exception of a hello a refusal: ``test_regressions``.) Fix:
    describe the values with a bounded repr (``reprlib``), or refuse non-scalar ones."""
    why = settings_mismatch({"n": 3}, {"n": nest(1000)}, "a", "b")
    assert why.startswith("n is 3 on a but")


def test_the_known_bugs_are_what_the_core_fuzzers_pass_over() -> None:
    """``corenodes.KNOWN`` covers exactly the two core bugs above, met through real datagrams."""
    ping = membership.Ping(1, "b", [["b", "b:1", 0, ["up"]]], 0)
    deep = {"cluster": "ringkv", "n": nest(1000), "partitions": 64}
    join = membership.Join("x", "x:1", 0, deep, "")
    for datagram in (m.Datagram("b:1", ping), m.Datagram("x:1", join)):
        c = corenodes.fresh_cluster()
        with corenodes.caught() as errors:
            corenodes.deliver(c, "a", datagram)
        assert len(errors) == 1 and corenodes.known(errors[0])
        assert not corenodes.unexpected(errors)
