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


@pytest.mark.parametrize("seed", range(20))
def test_what_check_encoded_accepts_decodes(seed: int) -> None:
    """The check a record from elsewhere passes before it is kept (``check_encoded``, also in
    ``merge_encoded``) accepts nothing ``decode`` refuses: a damaged record is refused at the
    door, never stored and then found undecodable by a read."""
    rnd = random.Random(seed)
    r = rec.EMPTY
    samples = []
    for i in range(8):
        value = None if rnd.random() < 0.3 else b"v%d" % i
        r = rec.write(r, rnd.choice(["a@1", "b@2"]), value, i, {} if rnd.random() < 0.3 else None)
        samples.append(rec.encode(r))
    for _ in range(2000):
        data = bytearray(rnd.choice(samples))
        roll = rnd.random()
        if roll < 0.4:
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        elif roll < 0.7:
            data += bytes([rnd.randrange(256)])
        else:
            del data[rnd.randrange(len(data)) :]
        try:
            rec.check_encoded(bytes(data))
        except ValueError:
            continue
        rec.decode(bytes(data))  # must not raise
        assert rec.merge_encoded(None, bytes(data)) == bytes(data)
