"""Bugs the fuzzers found in code outside the fuzzing work, fixed afterwards: regression tests.

(They were strict xfails while reported; ``corenodes.KNOWN`` let the core-level fuzzers pass
over them meanwhile and should now stay empty.)
"""

from __future__ import annotations

from ring.common import settings_mismatch
from ring.core import membership
from ring.core import messages as m
from tests.fuzz import corenodes
from tests.fuzz.strategies import nest


def test_a_membership_record_whose_state_is_not_a_string_is_ignored() -> None:
    """``membership.parse_record`` looked the state up in a dict before checking that it is a
    string, so a gossip update ``[name, address, incarnation, ["up"]]`` raises TypeError
    (unhashable) inside the core: the node drops the whole datagram, counts an internal error
    and logs it, instead of ignoring that one record as malformed. Fix: check
    ``isinstance(state, str)`` before ``state not in _RANK``."""
    assert membership.parse_record(["a", "a:1", 1, ["up"]]) is None


def test_a_join_whose_settings_nest_deeply_is_refused() -> None:
    """``ring.common.settings_mismatch`` put ``repr`` of both values in its message. msgpack
    decodes values nested up to 1023 deep, and ``repr`` of one nested deeper than about 990
    exceeds Python's recursion limit: a gossip Join (or Sync) whose settings hold one raises
    RecursionError inside the core (isolated to that datagram, counted and logged as an internal
    error). (A peer's TCP hello with such settings raised it out of ``data_received`` too, until
    the security review made any exception of a hello a refusal: ``test_regressions``.) Fixed:
    it describes keys and values in bounded reprs (``reprlib``), and sorts keys of any type."""
    why = settings_mismatch({"n": 3}, {"n": nest(1000)}, "a", "b")
    assert why.startswith("n is 3 on a but") and len(why) < 200
    assert settings_mismatch({"n": 3}, {"n": 3, 1: 2}, "a", "b") == "1 is None on a but 2 on b"


def test_the_datagrams_that_met_those_bugs_now_raise_nothing_in_the_core() -> None:
    """Met through real datagrams, the two bugs above raised inside the core; now nothing does
    (the malformed record is ignored, the deep Join is refused by a check)."""
    ping = membership.Ping(1, "b", [["b", "b:1", 0, ["up"]]], 0)
    deep = {"cluster": "ringkv", "n": nest(1000), "partitions": 64}
    join = membership.Join("x", "x:1", 0, deep, "")
    for datagram in (m.Datagram("b:1", ping), m.Datagram("x:1", join)):
        c = corenodes.fresh_cluster()
        with corenodes.caught() as errors:
            corenodes.deliver(c, "a", datagram)
        assert not corenodes.unexpected(errors), corenodes.describe(errors)
        assert not any(corenodes.known(e) for e in errors)
