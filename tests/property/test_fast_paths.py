"""The byte-level fast paths of ring.core.record agree with the general code on reachable
records: get_versioned's ``versioned_parts`` and the replica step ``merge_encoded``."""

from __future__ import annotations

import random

import pytest

from ring.core import record as rec
from ring.embedded import versioned_of


@pytest.mark.parametrize("seed", range(40))
def test_versioned_parts_matches_the_decoded_record(seed: int) -> None:
    rnd = random.Random(seed)
    r = rec.EMPTY
    for i in range(30):
        ctx = None if rnd.random() < 0.5 else dict(r.context) if rnd.random() < 0.5 else {}
        value = None if rnd.random() < 0.25 else b"v%d" % i
        r = rec.write(r, rnd.choice(["a@1", "b@2"]), value, i, ctx)
        expected = versioned_of(r)
        got = rec.versioned_parts(rec.encode(r))
        assert got == (expected.values, expected.context, expected.value)


@pytest.mark.parametrize("seed", range(40))
def test_merge_encoded_is_reconcile(seed: int) -> None:
    rnd = random.Random(seed)
    replicas = [rec.EMPTY] * 3
    for i in range(40):
        j = rnd.randrange(3)
        if rnd.random() < 0.5:
            ctx = None if rnd.random() < 0.5 else dict(replicas[rnd.randrange(3)].context)
            value = None if rnd.random() < 0.2 else b"v%d" % i
            replicas[j] = rec.write(replicas[j], f"n{j}@e", value, i, ctx)
            continue
        k = rnd.randrange(3)
        if replicas[k].is_empty:
            continue
        local = None if replicas[j].is_empty else rec.encode(replicas[j])
        got = rec.merge_encoded(local, rec.encode(replicas[k]))
        want = rec.reconcile(replicas[j], replicas[k])
        assert (replicas[j] if got is None else rec.decode(got)) == want
        if got is None:
            assert want == replicas[j]
        replicas[j] = want
