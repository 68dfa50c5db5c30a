"""``Index``: add, remove, get, search, repair. The rules it keeps are in the package docstring.

Store operations per call (``tests/search/test_index_cost.py`` counts them), for a document
with ``u`` distinct (field, term) pairs replacing one with ``u'``, in a bucket whose statistics
key has one value, on a store without ``get_versioned_many``, ``put_many`` or ``batch`` (a
call each). Every delete is preceded by a ``get_versioned`` of its key, so that it carries the
causal context of what it deletes (see ``Writes``): one extra read per deleted key; a key that
read finds already gone is not deleted. The statistics key ``T bucket`` and the intents key
``W writer`` are rewritten in place, each put with the context of a ``get_versioned``. On
``ring.connect`` and ``ring.aio`` the reads before a phase's deletes are one
``get_versioned_many`` and its puts without a context (records, postings) one ``put_many``
(both pipelined); on the embedded store each phase is one ``batch``.

=================  ============================================================  ============
operation          reads; writes (in order)                                      total
=================  ============================================================  ============
add                read T bucket, scan versions; intents (read, put), doc, u     u + 2u' + 12
                   postings, stats, u' old postings (read, del), old doc (read,
                   del), scan versions (check), read T bucket (settle),
                   intents (read, del). A new document: no old postings or doc   u + 10
add_many of k      the same per document, but the intents once per call and the  k(5 + u +
                   stats once per bucket: a read, a put and a read (settle)      2u') + 4 + 3
                                                                                 per bucket
remove             read T bucket, scan versions; intents (read, put), u          2u + 10
                   postings (read, del), doc (read, del), stats, read T bucket
                   (settle), intents (read, del)
get                scan versions                                                 1
len                scan T, scan W                                                2
search             scan W, scan T, one scan per (field, term) or (field,         2 + s + h
                   prefix) of the query, one scan per hit up to offset +
                   limit (its versions: the check, and its fields); a hit that
                   fails the check: evaluated again (no new scans of terms)
repair             scan W; per intent: scans of its document, its postings       4 + ...
                   rewritten or deleted (each delete a read and a del); scan D
                   (every record); scan T; per bucket that differs a read, a
                   recompute (scan D bucket), a put; scan P; per document with
                   stale postings a scan of its versions; each W key read and
                   deleted: linear in the size of the index
=================  ============================================================  ============

A bucket whose key has siblings (overlapping windows) costs the writer that finds them one
``D bucket`` scan and one put more per round (see ``Index._settle``). What a search scans does
not grow with the writes ever made: the ``T`` scan meets at most 256 records and the ``W`` scan
one per writer id ever used (ids are pooled per process, so about as many as the operations
ever at work at once, per process that wrote). Before ``T`` and ``W`` were rewritten in place
(a fresh key per write, the old one deleted) both scans stepped over a tombstone per batch or
per add ever made: a search for an absent word took 3.0 ms at 3,000 documents, 0.25 ms since.

Where the store has ``batch`` (the embedded store), the writes of each phase are one call (a
phase of one write is a plain put or delete) but the reads before deletes are not: add is 2
scans, u' + 5 reads and 5 write calls (``u' + 12``, whatever u is; a new document 10);
add_many of k is 2k scans and k(u' + 1) reads (none for new documents), plus 2 reads per
bucket, 2 intents reads and 5 write calls (6 when a check meets a concurrent writer). Before
``T`` and ``W`` were rewritten in place, add cost ``u' + 11`` calls with ``batch``, remove
``2u + 12`` and add_many ``k(8 + u + 2u') + 4 per bucket`` without.

Intents left by a crash (or by writers still at work) cost a search one scan per such document
and one bucket scan per bucket they are in, until ``repair`` removes them.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ring.common import KVStore, Versioned
from ring.errors import InvalidInput
from search import keys as K
from search.analysis import Analyzer, analyzer_named
from search.query import Group, Node, Prefix, parse
from search.records import (
    Fields,
    Intent,
    Stats,
    decode_intents,
    doc_fields,
    doc_lengths,
    encode_doc_record,
    encode_intents,
    encode_posting,
    normalize,
    posting_head,
    posting_positions,
)

K1 = 1.2
B = 0.75
BATCH = 256
# The intents of one batch hold its documents' words (at most their text): batches are cut
# before their text reaches this many characters, far below the store's 16 MiB value limit.
CHUNK_CHARS = 2 * 1024 * 1024

Word = tuple[str, str]  # (field, term)
_Mark = tuple[bytes, str, list[bytes], bytes]  # an intent: (version, op, read, words)


def _words(postings: dict[Word, list[int]]) -> bytes:
    """The (field, term) pairs of a version, as its intent keeps them."""
    return b"".join(K.escape(f) + K.TERMINATOR + K.escape(t) + K.TERMINATOR for f, t in postings)


@dataclass(frozen=True, slots=True)
class Hit:
    id: K.DocId
    score: float
    fields: Fields
    snippet: str | None = None


@dataclass(slots=True)
class RepairReport:
    intents: int = 0
    buckets_recomputed: int = 0
    postings_written: int = 0
    postings_deleted: int = 0
    versions_deleted: int = 0


def bm25(tf: int, dl: int, n_t: int, n: int, avgdl: float) -> float:
    idf = math.log(1 + (n - n_t + 0.5) / (n_t + 0.5))
    return idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))


@dataclass(slots=True)
class Analyzed:
    """A document version taken apart: per field its length and its terms' positions."""

    lens: dict[str, int]
    postings: dict[Word, list[int]]


def analyze(analyzer: Analyzer, fields: Fields) -> Analyzed:
    lens: dict[str, int] = {}
    postings: dict[Word, list[int]] = {}
    for f, text in fields.items():
        terms = analyzer.terms(text)
        lens[f] = len(terms)
        for pos, t in terms:
            postings.setdefault((f, t), []).append(pos)
    return Analyzed(lens, postings)


class Writes:
    """Writes collected for one phase; ``flush`` applies them in order (one atomic batch where
    the store has ``batch``).

    Every delete carries the causal context of what it deletes: ``flush`` first reads each key
    to delete with ``get_versioned`` (all in one ``get_versioned_many`` where the store has it:
    one call, pipelined on a cluster) and deletes it with that context, or skips it when the
    read finds it gone. A delete without
    a context would supersede only what its coordinator's own replica holds: on a cluster, a
    replica that has not received the key yet (a node back from a restart while its hints wait)
    would write a tombstone concurrent with the value, and the value would win for good. Puts
    of versions and postings need no context: each such key is new (or, in ``repair``,
    rewritten with the same value), so it never has to supersede a value. A statistics key is
    rewritten in place with the context of the read that opened its window (``put`` with
    ``context``). A phase never puts and deletes the same key (its reads come before its
    writes)."""

    def __init__(self, store: KVStore) -> None:
        self.store = store
        self.ops: list[tuple[bytes, bytes | None, bytes | None]] = []

    def put(self, key: bytes, value: bytes, context: bytes | None = None) -> None:
        self.ops.append((key, value, context))

    def delete(self, key: bytes) -> None:
        self.ops.append((key, None, None))

    def barrier(self) -> None:
        """The writes queued so far land before those queued after: nothing to do where the
        store has ``batch`` (the phase is one batch, applied in order), else a ``flush`` (a
        ``put_many`` keeps no order among its pairs)."""
        if getattr(self.store, "batch", None) is None:
            self.flush()

    def flush(self) -> None:
        ops, self.ops = self.ops, []
        todo: list[tuple[bytes, bytes | None, bytes | None]] = []  # (key, value or None, context)
        doomed = list(dict.fromkeys(k for k, v, _ in ops if v is None))
        many: Callable[[list[bytes]], list[Versioned]] | None = getattr(
            self.store, "get_versioned_many", None
        )
        if many is not None and len(doomed) > 1:  # one call (pipelined on a cluster)
            seen_of = dict(zip(doomed, many(doomed)))
        else:
            seen_of = {k: self.store.get_versioned(k) for k in doomed}
        for k, v, c in ops:
            if v is not None:
                todo.append((k, v, c))
            elif k in seen_of:
                seen = seen_of.pop(k)
                if seen.values:  # else already deleted (or never written): nothing to do
                    todo.append((k, None, seen.context))
        if not todo:
            return
        batch: Callable[[], Any] | None = getattr(self.store, "batch", None)
        if batch is not None and len(todo) > 1:
            with batch() as b:
                for k, v, ctx in todo:
                    if v is None:
                        b.delete(k, context=ctx)
                    else:
                        b.put(k, v, context=ctx)
            return
        put_many: Callable[[list[tuple[bytes, bytes]]], None] | None = getattr(
            self.store, "put_many", None
        )
        run: list[tuple[bytes, bytes]] = []  # puts without a context, sent together
        for k, v, ctx in todo:
            if v is not None and ctx is None and put_many is not None:
                run.append((k, v))
                continue
            self._puts(run, put_many)
            if v is None:
                self.store.delete(k, context=ctx)
            else:
                self.store.put(k, v, context=ctx)
        self._puts(run, put_many)

    def _puts(
        self,
        run: list[tuple[bytes, bytes]],
        put_many: Callable[[list[tuple[bytes, bytes]]], None] | None,
    ) -> None:
        """Send a run of puts without a context: one ``put_many`` (pipelined on a cluster; in
        no particular order, so a phase whose puts must land in order flushes in between)."""
        if len(run) > 1 and put_many is not None:
            put_many(run)
        elif run:
            self.store.put(run[0][0], run[0][1])
        run.clear()


_FREE_WRITERS: list[bytes] = []  # writer ids of this process not in use
_FREE_LOCK = threading.Lock()


@contextlib.contextmanager
def _writer_id(fixed: bytes | None) -> Iterator[bytes]:
    """A writer id for one add or remove: ``fixed``, else one from a process-wide pool (so the
    ``W`` keys an index ever has are about as many as the writers ever at work at once, not
    one per thread or per ``Index``). An id whose operation raised goes back to the pool too
    (else every rejected call would leave one more ``W`` key for searches to scan): its ``W``
    key may still hold that operation's intents, which the id's next operation keeps (see
    ``_mark``) until ``repair`` finishes them."""
    if fixed is not None:
        yield fixed
        return
    with _FREE_LOCK:
        writer = _FREE_WRITERS.pop() if _FREE_WRITERS else K.new_writer_id()
    try:
        yield writer
    finally:
        with _FREE_LOCK:
            _FREE_WRITERS.append(writer)


@dataclass(slots=True)
class _Pending:
    """One document of an add in flight."""

    doc: bytes
    fields: Fields
    analyzed: Analyzed
    bucket: bytes
    old: dict[bytes, bytes]  # version -> record, as read before writing
    version: bytes = b""


class Index:
    """A full-text index named ``name`` in ``store`` (``ring.open(...)`` or ``ring.connect(...)``).

    Safe to share between threads; each thread writes as its own writer (a random 4-byte id in
    the versions it makes). ``writer`` (4 bytes) and ``clock`` (microseconds) are for tests.
    """

    def __init__(
        self,
        store: KVStore,
        name: object,
        analyzer: str = "standard",
        *,
        writer: bytes | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if writer is not None and (not isinstance(writer, bytes) or len(writer) != 4):
            raise InvalidInput("writer must be 4 bytes")
        self.store = store
        self.keys = K.Keys(name)
        self.analyzer = analyzer_named(analyzer)
        self._fixed_writer = writer
        self._stats_cache: tuple[list[tuple[bytes, bytes]], Stats] | None = None
        self.clock = K.HybridClock(clock)
        seen = store.get_versioned(self.keys.meta)
        stored = max(seen.values) if seen.values else None
        if stored is None:
            store.put(self.keys.meta, self.analyzer.name.encode(), context=seen.context)
        elif stored != self.analyzer.name.encode():
            raise InvalidInput(
                f"index {self.keys.name!r} uses analyzer {stored.decode(errors='replace')!r},"
                f" not {self.analyzer.name!r}"
            )

    # --- reads of the store ---------------------------------------------------------------

    def _versions(self, doc: bytes) -> dict[bytes, bytes]:
        """Every stored version of ``doc``: version -> record."""
        prefix = self.keys.doc_prefix(doc)
        n = len(prefix)
        return {k[n:]: v for k, v in self.store.scan(prefix=prefix)}

    def _bucket_stats(self, bucket: bytes) -> Versioned:
        return self.store.get_versioned(self.keys.stat(bucket))

    def _recompute(self, bucket: bytes) -> Stats:
        """A bucket's statistics from its documents: each document's newest version."""
        winners: dict[bytes, bytes] = {}
        for key, value in self.store.scan(prefix=self.keys.bucket_docs(bucket)):
            doc = key[len(self.keys.docs) + 2 : -K.VERSION_BYTES]
            version = key[-K.VERSION_BYTES :]
            if doc not in winners or version > winners[doc][: K.VERSION_BYTES]:
                winners[doc] = version + value
        total = Stats()
        for vv in winners.values():
            total.add(Stats.of(doc_lengths(vv[K.VERSION_BYTES :])))
        return total

    def _intent_keys(self) -> list[tuple[bytes, bytes]]:
        """The live ``W`` keys, ``(key, value)``: none when no one is writing."""
        return list(self.store.scan(prefix=self.keys.intents))

    def _intents(self, marks: list[tuple[bytes, bytes]] | None = None) -> dict[bytes, list[_Mark]]:
        """Intents by document: ``(version, op, versions a remove read, an add's words)``."""
        found: dict[bytes, list[_Mark]] = defaultdict(list)
        for _, value in self._intent_keys() if marks is None else marks:
            for op, doc, version, read, words in decode_intents(value):
                found[doc].append((version, op, read, words))
        return found

    def _words_of(self, words: bytes) -> list[Word]:
        out = []
        at = 0
        while at < len(words):
            f, at = K.unescape(words, at)
            t, at = K.unescape(words, at)
            out.append((f, t))
        return out

    # --- writes ---------------------------------------------------------------------------

    def _new_version(self, writer: bytes, observed: Iterable[bytes] = ()) -> bytes:
        seen = max((K.hts_of(v) for v in observed), default=0)
        return K.version(self.clock.tick(seen), writer)

    def _mark(self, writer: bytes, intents: list[Intent]) -> bytes | None:
        """Put the writer's intents, before any other write (one key, rewritten in place with
        the context read). Returns what that key held before: intents of an earlier operation
        of the same writer that did not finish (a fixed ``writer`` after a crash), which are
        kept in it and put back by ``_unmark``."""
        key = self.keys.intent(writer)
        seen = self.store.get_versioned(key)
        left = None
        if seen.values:  # one value; siblings cannot arise with one writer per id
            left = encode_intents([i for v in seen.values for i in decode_intents(v)])
        kept = decode_intents(left) if left else []
        self.store.put(key, encode_intents(kept + intents), context=seen.context)
        return left

    def _unmark(self, writer: bytes, left: bytes | None) -> None:
        """The operation is done: delete the writer's intents, with the context read."""
        key = self.keys.intent(writer)
        seen = self.store.get_versioned(key)
        if left:
            self.store.put(key, left, context=seen.context)
        elif seen.values:
            self.store.delete(key, context=seen.context)

    def _settle(self, buckets: Iterable[bytes]) -> None:
        """After the window closed: a bucket whose statistics key has siblings (writers whose
        windows overlapped each put a value with the context they had read, neither covering
        the other's) is recomputed from its documents and put with the context of every
        sibling, until a read finds one value. Of two overlapping writers the later to read
        its bucket here sees both siblings; until then both have intents in the bucket, which
        readers recompute."""
        for b in sorted(buckets):
            key = self.keys.stat(b)
            while True:
                seen = self.store.get_versioned(key)
                if len(seen.values) <= 1:
                    break
                self.store.put(key, self._recompute(b).encode(), context=seen.context)

    def _delete_version(self, w: Writes, doc: bytes, version: bytes, record: bytes) -> None:
        """Queue the deletes of one document version: its postings, then its record."""
        for f, t in analyze(self.analyzer, doc_fields(record)).postings:
            w.delete(self.keys.posting(f, t, doc, version))

    def _write_stats(self, w: Writes, bucket: bytes, read: Versioned, delta: Stats | None) -> None:
        """Rewrite the bucket's statistics key with the context ``read`` there: the one value
        read plus ``delta``, or — when there was not exactly one (siblings of writers that
        raced, or none yet) — the statistics recomputed from the bucket's documents."""
        if len(read.values) == 1 and delta is not None:
            new = Stats.decode(read.values[0])
            new.add(delta)
        else:
            new = self._recompute(bucket)
        w.put(self.keys.stat(bucket), new.encode(), read.context)

    def add(self, doc_id: K.DocId, doc: object) -> None:
        """Index ``doc`` (a str: the field "body"; or a dict field -> str) as ``doc_id``,
        replacing the document of that id if there is one."""
        self._apply([(K.encode_doc(doc_id), normalize(doc))])

    def add_many(self, items: Iterable[tuple[K.DocId, object]], batch_size: int = BATCH) -> int:
        """``add`` for each ``(doc_id, doc)``, ``batch_size`` at a time. Returns how many."""
        chunk: dict[bytes, Fields] = {}
        count = size = 0
        for doc_id, doc in items:
            enc = K.encode_doc(doc_id)
            fields = normalize(doc)
            n = sum(len(f) + len(t) for f, t in fields.items())
            if chunk and (enc in chunk or len(chunk) >= batch_size or size + n > CHUNK_CHARS):
                self._apply(list(chunk.items()))
                chunk, size = {}, 0
            chunk[enc] = fields
            size += n
            count += 1
        if chunk:
            self._apply(list(chunk.items()))
        return count

    def _apply(self, docs: list[tuple[bytes, Fields]]) -> None:
        with _writer_id(self._fixed_writer) as writer:
            self._apply_as(writer, docs)

    def _apply_as(self, writer: bytes, docs: list[tuple[bytes, Fields]]) -> None:
        w = Writes(self.store)
        buckets = {K.bucket_of(d) for d, _ in docs}
        # 1. The window opens: the buckets' statistics keys, then the versions they cover.
        stats_read = {b: self._bucket_stats(b) for b in sorted(buckets)}
        pending = [
            _Pending(d, f, analyze(self.analyzer, f), K.bucket_of(d), self._versions(d))
            for d, f in docs
        ]
        for p in pending:
            p.version = self._new_version(writer, p.old)
        left = self._mark(
            writer, [("a", p.doc, p.version, [], _words(p.analyzed.postings)) for p in pending]
        )
        # 2. The new versions: records first, then postings (a posting's record always exists).
        for p in pending:
            w.put(self.keys.doc(p.doc, p.version), encode_doc_record(p.analyzed.lens, p.fields))
        w.barrier()
        for p in pending:
            for (f, t), positions in p.analyzed.postings.items():
                w.put(
                    self.keys.posting(f, t, p.doc, p.version),
                    encode_posting(p.analyzed.lens[f], positions),
                )
        w.flush()
        # 3. Statistics: the window closes.
        deltas: dict[bytes, Stats] = defaultdict(Stats)
        for p in pending:
            deltas[p.bucket].add(Stats.of(p.analyzed.lens))
            if p.old:
                deltas[p.bucket].add(Stats.of(doc_lengths(p.old[max(p.old)])), -1)
        for b in sorted(buckets):
            self._write_stats(w, b, stats_read[b], deltas[b])
        w.flush()
        # 4. The check, then the clean-up: a concurrent writer may have made a newer version
        #    (then ours goes) or an older one (then it goes); the versions this add replaced go
        #    too. Records first, then postings, in one phase: a ``repair`` writes a version's
        #    postings only while its record exists and reads the record again after, so one
        #    that ran between this phase's posting deletes and a later record delete cannot
        #    leave postings behind (see ``_recheck``).
        now = {p.doc: self._versions(p.doc) for p in pending}
        doomed: list[tuple[bytes, bytes, bytes | None]] = []  # (doc, version, record or None)
        for p in pending:
            stored = now[p.doc]
            top = max(stored, default=b"")
            if top != p.version:
                doomed.append((p.doc, p.version, None))
            for version in sorted(stored):
                if version != top and version != p.version:
                    doomed.append((p.doc, version, stored[version]))
        mine = {p.doc: p for p in pending}
        for doc, version, record in doomed:
            if record is not None or version in now[doc]:
                w.delete(self.keys.doc(doc, version))
        for doc, version, record in doomed:
            if record is None:
                for f, t in mine[doc].analyzed.postings:
                    w.delete(self.keys.posting(f, t, doc, version))
            else:
                self._delete_version(w, doc, version, record)
        w.flush()
        # 6. Statistics of overlapping windows are recomputed; the intents go.
        self._settle(buckets)
        self._unmark(writer, left)

    def remove(self, doc_id: K.DocId) -> bool:
        """Remove the document ``doc_id``; True if it was there."""
        doc = K.encode_doc(doc_id)
        with _writer_id(self._fixed_writer) as writer:
            return self._remove_as(writer, doc)

    def _remove_as(self, writer: bytes, doc: bytes) -> bool:
        bucket = K.bucket_of(doc)
        read = self._bucket_stats(bucket)
        old = self._versions(doc)
        if not old:
            return False
        w = Writes(self.store)
        version = self._new_version(writer, old)
        left = self._mark(writer, [("r", doc, version, sorted(old), b"")])
        for v in sorted(old):  # records first, then postings (see ``_apply_as``, step 4)
            w.delete(self.keys.doc(doc, v))
        for v in sorted(old):
            self._delete_version(w, doc, v, old[v])
        w.flush()
        delta = Stats()
        delta.add(Stats.of(doc_lengths(old[max(old)])), -1)
        self._write_stats(w, bucket, read, delta)
        w.flush()
        self._settle([bucket])
        self._unmark(writer, left)
        return True

    # --- reads ----------------------------------------------------------------------------

    def get(self, doc_id: K.DocId) -> Fields | None:
        """The stored fields of ``doc_id``, or None."""
        versions = self._versions(K.encode_doc(doc_id))
        return doc_fields(versions[max(versions)]) if versions else None

    def __len__(self) -> int:
        return self._statistics(self._intents()).docs

    def _statistics(self, intents: dict[bytes, Any]) -> Stats:
        """The index's statistics: the sum of the buckets' (one scan of their keys), each
        recomputed from its documents when it has documents with intents. The sum of the
        values last scanned is kept: a scan that finds the same values adds nothing up."""
        scanned = list(self.store.scan(prefix=self.keys.stats))
        dirty = {K.bucket_of(d) for d in intents}
        if not dirty:
            cached = self._stats_cache
            if cached is not None and cached[0] == scanned:
                return cached[1].copy()
        n = len(self.keys.stats)
        total = Stats()
        for key, value in scanned:
            if key[n:] not in dirty:
                total.add(Stats.decode(value))
        if not dirty:
            self._stats_cache = (scanned, total.copy())
        for b in dirty:
            total.add(self._recompute(b))
        return total

    def search(
        self,
        query: str,
        limit: int = 10,
        offset: int = 0,
        snippets: bool = False,
        mark: tuple[str, str] = ("<b>", "</b>"),
    ) -> list[Hit]:
        """The documents matching ``query``, best first (ties by id: str ids before bytes
        ids, each in their order). ``snippets=True`` sets each hit's ``snippet``: its best
        fragment with the matched terms between ``mark``."""
        if not isinstance(limit, int) or limit < 0 or not isinstance(offset, int) or offset < 0:
            raise InvalidInput("limit and offset are integers >= 0")
        tree = parse(query)
        run = _Query(self)
        while True:
            matched = run.eval(tree) or {}
            scored = [(run.score(doc, words), doc) for doc, words in matched.items()]
            best = heapq.nsmallest(offset + limit, scored, key=lambda s: (-s[0], _order(s[1])))
            # Every hit up to the page's end is checked, those skipped by ``offset`` too: a
            # stale one among them would shift the page.
            if not run.verify([doc for _, doc in best], matched):
                break
        hits = []
        for score, doc in best[offset:]:
            fields = run.checked[doc]
            snippet = None
            if snippets:
                snippet = _snippet(self.analyzer, fields, matched[doc], mark)
            hits.append(Hit(K.decode_doc(doc)[0], score, fields, snippet))
        return hits

    # --- repair ---------------------------------------------------------------------------

    def repair(self) -> RepairReport:
        """Make the index consistent with its documents again, whatever interrupted writers or
        lagging replicas left: finish the intents of interrupted adds and removes, keep only
        the newest version of every document, rewrite the statistics of every bucket that
        differs from its documents, delete every posting of a version that is not its
        document's newest and write the missing ones of the newest. Reads the whole index (a
        scan of the documents, one of the postings); safe beside writers at work (a posting
        is deleted only after its document was read again, and a posting written is checked
        again after). A writer still at work has its intents finished too: harmless, but if it
        then crashes, what it leaves is found by the next ``repair``."""
        report = RepairReport()
        marks_read = self._intent_keys()
        intents = self._intents(marks_read)
        w = Writes(self.store)
        for doc, marks in intents.items():
            for version, op, read, words in sorted(marks):
                report.intents += 1
                now = self._versions(doc)
                if op == "a" and version in now and version == max(now):
                    a = analyze(self.analyzer, doc_fields(now[version]))
                    for (f, t), positions in a.postings.items():
                        w.put(
                            self.keys.posting(f, t, doc, version),
                            encode_posting(a.lens[f], positions),
                        )
                        report.postings_written += 1
                    w.flush()
                    self._recheck(w, doc, version, list(a.postings))
                    now = self._versions(doc)
                if op == "a" and version not in now:
                    # Its record is gone (a newer writer deleted it, maybe before these postings
                    # were written) or was never written: its words name its postings.
                    for f, t in self._words_of(words):
                        w.delete(self.keys.posting(f, t, doc, version))
                        report.postings_deleted += 1
                self._keep_newest(w, doc, now, report, also=read if op == "r" else ())
        # Every document's newest version (the others go), its statistics and how many
        # postings it has. Keys of one document are contiguous, in version order.
        winners: dict[bytes, tuple[bytes, int]] = {}  # doc -> (version, postings it has)
        fresh: dict[bytes, Stats] = defaultdict(Stats)
        run: dict[bytes, bytes] = {}  # the versions of the document being read

        def close(doc: bytes) -> None:
            top = max(run)
            if len(run) > 1:
                self._keep_newest(w, doc, dict(run), report)
            a = analyze(self.analyzer, doc_fields(run[top]))
            winners[doc] = (top, len(a.postings))
            fresh[K.bucket_of(doc)].add(Stats.of(a.lens))
            run.clear()

        current = b""
        for key, value in self.store.scan(prefix=self.keys.docs):
            _, doc, version = self.keys.parse_doc_key(key)
            if doc != current and run:
                close(current)
            current = doc
            run[version] = value
        if run:
            close(current)
        present = {self.keys.parse_stat_key(k) for k, _ in self.store.scan(prefix=self.keys.stats)}
        for b in sorted(present | set(fresh)):
            seen = self._bucket_stats(b)
            if len(seen.values) == 1 and Stats.decode(seen.values[0]) == fresh.get(b, Stats()):
                continue
            # Rewritten as a writer would: the key read, the bucket recomputed from its
            # documents as they are now, the key put with the context read, then settled (a
            # writer whose window overlaps this one leaves siblings, recomputed again).
            want = self._recompute(b)
            if len(seen.values) == 1 and Stats.decode(seen.values[0]) == want:
                continue
            w.put(self.keys.stat(b), want.encode(), seen.context)
            w.flush()
            self._settle([b])
            report.buckets_recomputed += 1
        self._sweep(w, report, winners)
        # The intents go, each writer's key only if it still holds what was read: a writer
        # still at work may have put new ones there since.
        for key, value in marks_read:
            seen = self.store.get_versioned(key)
            if seen.values == (value,):
                self.store.delete(key, context=seen.context)
        return report

    def _keep_newest(
        self,
        w: Writes,
        doc: bytes,
        versions: dict[bytes, bytes],
        report: RepairReport,
        also: Iterable[bytes] = (),
    ) -> None:
        """Delete every version of ``doc`` in ``versions`` but the newest (and those in
        ``also``, a remove's): records first, then postings."""
        top = max(versions, default=b"")
        gone = set(also)
        drop = [v for v in sorted(versions) if v < top or v in gone]
        for v in drop:
            w.delete(self.keys.doc(doc, v))
            report.versions_deleted += 1
        for v in drop:
            self._delete_version(w, doc, v, versions[v])
        w.flush()

    def _recheck(self, w: Writes, doc: bytes, version: bytes, written: list[Word]) -> None:
        """``repair`` just wrote the postings ``written`` of ``doc``'s ``version`` (having
        read its record): take them back if ``version`` is no longer the newest. Writers delete
        a version's record before its postings, so a writer that deleted it after the write
        read the postings after it too, and one that deleted it before this read is seen."""
        if max(self._versions(doc), default=b"") != version:
            for f, t in written:
                w.delete(self.keys.posting(f, t, doc, version))
            w.flush()

    def _sweep(
        self,
        w: Writes,
        report: RepairReport,
        winners: dict[bytes, tuple[bytes, int]],
    ) -> None:
        """Every posting of a version that is not its document's newest goes (the document
        read again first: a writer may have made a newer one since); a document that lacks
        postings of its newest version gets them (checked again after)."""
        stale: dict[bytes, list[tuple[bytes, bytes]]] = defaultdict(list)
        have: dict[bytes, int] = defaultdict(int)
        for key, _ in self.store.scan(prefix=self.keys.postings):
            _, _, doc, version = self.keys.parse_posting_key(key)
            if doc in winners and winners[doc][0] == version:
                have[doc] += 1
            else:
                stale[doc].append((key, version))
        for doc, found in stale.items():
            top = max(self._versions(doc), default=b"")
            for key, version in found:
                if version != top:
                    w.delete(key)
                    report.postings_deleted += 1
        w.flush()
        for doc, (version, count) in winners.items():
            if have[doc] == count:
                continue
            now = self._versions(doc)
            if max(now, default=b"") != version:
                continue  # replaced since: its writer writes the new one's postings
            a = analyze(self.analyzer, doc_fields(now[version]))
            for (f, t), positions in a.postings.items():
                w.put(self.keys.posting(f, t, doc, version), encode_posting(a.lens[f], positions))
                report.postings_written += 1
            w.flush()
            self._recheck(w, doc, version, list(a.postings))


def _holds(positions: tuple[int, ...], p: int) -> bool:
    """Whether the sorted ``positions`` hold ``p``."""
    i = bisect.bisect_left(positions, p)
    return i < len(positions) and positions[i] == p


def _order(doc: bytes) -> tuple[int, Any]:
    doc_id = K.decode_doc(doc)[0]
    return (0, doc_id) if isinstance(doc_id, str) else (1, doc_id)


@dataclass(slots=True)
class _Posting:
    version: bytes
    value: bytes | None = None  # the stored posting, or None for a suspect's in-memory one
    tf: int = 0
    dl: int = 0
    positions: tuple[int, ...] | None = None

    def head(self) -> tuple[int, int]:
        if self.value is not None and not self.tf:
            self.tf, self.dl = posting_head(self.value)
        return self.tf, self.dl

    def where(self) -> tuple[int, ...]:
        if self.positions is None:
            assert self.value is not None
            self.positions = posting_positions(self.value)
        return self.positions


@dataclass(slots=True)
class _Suspect:
    """A document with an intent: read whole, its stored postings ignored."""

    version: bytes
    record: bytes
    postings: dict[Word, _Posting] = field(default_factory=dict)


class _Query:
    """One search: statistics, postings read once each, and the evaluation of the tree."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.keys = index.keys
        intents = index._intents()
        self.stats = index._statistics(intents)
        self.fields = sorted(f for f, (n, _) in self.stats.fields.items() if n > 0)
        self.suspects: dict[bytes, _Suspect | None] = {}
        for doc in intents:
            self.suspects[doc] = self._suspect(index._versions(doc))
        self.checked: dict[bytes, Fields] = {}  # hits verified: their fields
        self.expanded: dict[tuple[str, str], set[str]] = {}
        self.cache: dict[Word, dict[bytes, _Posting]] = {}

    def _suspect(self, versions: dict[bytes, bytes]) -> _Suspect | None:
        """A document read whole: its newest version, analyzed (None: it has none)."""
        if not versions:
            return None
        top = max(versions)
        s = _Suspect(top, versions[top])
        a = analyze(self.index.analyzer, doc_fields(versions[top]))
        for (f, t), positions in a.postings.items():
            s.postings[(f, t)] = _Posting(top, None, len(positions), a.lens[f], tuple(positions))
        return s

    def verify(self, page: list[bytes], matched: dict[bytes, set[Word]]) -> bool:
        """Check each hit of ``page`` against its document's versions (one scan each, which
        also reads its fields). A hit matched by a posting of a version that is not its
        document's newest, or whose document has more than one version (replicas that lagged
        let two writers each keep their own, see the package docstring), becomes a suspect:
        read whole, its postings ignored. Returns whether any did (then evaluate again)."""
        again = False
        for doc in page:
            if doc in self.checked:
                continue
            s = self.suspects.get(doc)
            if s is not None:
                self.checked[doc] = doc_fields(s.record)
                continue
            versions = self.index._versions(doc)
            top = max(versions, default=b"")
            if len(versions) == 1 and all(self.cache[w][doc].version == top for w in matched[doc]):
                self.checked[doc] = doc_fields(versions[top])
                continue
            s = self.suspects[doc] = self._suspect(versions)
            for word, found in self.cache.items():
                found.pop(doc, None)
                if s is not None and word in s.postings:
                    found[doc] = s.postings[word]
            if s is not None:
                for (f, prefix), terms in self.expanded.items():
                    terms.update(t for ff, t in s.postings if ff == f and t.startswith(prefix))
                    for t in terms:
                        self.cache.setdefault((f, t), {})
            again = True
        return again

    # postings ------------------------------------------------------------------------------

    def _add_suspects(self, word: Word, found: dict[bytes, _Posting]) -> None:
        for doc, s in self.suspects.items():
            found.pop(doc, None)
            if s is not None and word in s.postings:
                found[doc] = s.postings[word]

    def postings(self, f: str, t: str) -> dict[bytes, _Posting]:
        word = (f, t)
        if word not in self.cache:
            prefix = self.keys.term_prefix(f, t)
            n = len(prefix)
            found = {
                k[n : -K.VERSION_BYTES]: _Posting(k[-K.VERSION_BYTES :], v)
                for k, v in self.index.store.scan(prefix=prefix)
            }
            if self.suspects:
                self._add_suspects(word, found)
            self.cache[word] = found
        return self.cache[word]

    def expand(self, f: str, prefix: str) -> list[str]:
        """The terms of field ``f`` starting with ``prefix`` (their postings are cached)."""
        if (f, prefix) in self.expanded:
            terms = self.expanded[(f, prefix)]
            return sorted(t for t in terms if self.cache.get((f, t)))
        by_term: dict[str, dict[bytes, _Posting]] = defaultdict(dict)
        for k, v in self.index.store.scan(prefix=self.keys.prefix_scan(f, prefix)):
            _, t, doc, version = self.keys.parse_posting_key(k)
            by_term[t][doc] = _Posting(version, v)
        for s in self.suspects.values():
            if s is not None:
                for ff, t in s.postings:
                    if ff == f and t.startswith(prefix):
                        by_term.setdefault(t, {})
        for t, found in by_term.items():
            if self.suspects:
                self._add_suspects((f, t), found)
            if (f, t) not in self.cache:
                self.cache[(f, t)] = found
        self.expanded[(f, prefix)] = set(by_term)
        return sorted(t for t, found in by_term.items() if self.cache[(f, t)])

    # evaluation ----------------------------------------------------------------------------

    def scope(self, f: str | None) -> list[str]:
        return self.fields if f is None else [f]

    def eval(self, node: Node) -> dict[bytes, set[Word]] | None:
        """The documents ``node`` matches, each with the words it matched them by; None when
        the node analyzed to nothing (a dropped clause)."""
        if isinstance(node, Group):
            return self.group(node)
        if isinstance(node, Prefix):
            p = self.index.analyzer.normalize_prefix(node.text)
            out: dict[bytes, set[Word]] = {}
            for f in self.scope(node.field):
                for t in self.expand(f, p):
                    for doc in self.cache[(f, t)]:
                        out.setdefault(doc, set()).add((f, t))
            return out
        terms = self.index.analyzer.terms(node.text)
        if not terms:
            return None
        out = {}
        for f in self.scope(node.field):
            if len(terms) == 1:
                for doc in self.postings(f, terms[0][1]):
                    out.setdefault(doc, set()).add((f, terms[0][1]))
            else:
                for doc in self.phrase(f, terms):
                    out.setdefault(doc, set()).update((f, t) for _, t in terms)
        return out

    def phrase(self, f: str, terms: list[tuple[int, str]]) -> list[bytes]:
        """The documents with ``terms`` at their relative positions in field ``f``: the rarest
        word's documents are looked up in the others' postings, and in each document the
        word with the fewest positions gives the candidate starts, checked against the others'
        positions (sorted) by bisection."""
        lists = [self.postings(f, t) for _, t in terms]
        offsets = [pos - terms[0][0] for pos, _ in terms]
        rare = min(range(len(lists)), key=lambda i: len(lists[i]))
        others = [lst for i, lst in enumerate(lists) if i != rare]
        found = []
        for doc in lists[rare]:
            if not all(doc in lst for lst in others):
                continue
            here = [lst[doc] for lst in lists]
            fewest = min(range(len(here)), key=lambda i: here[i].head()[0])
            starts = [p - offsets[fewest] for p in here[fewest].where()]
            for i, posting in enumerate(here):
                if i == fewest or not starts:
                    continue
                where, off = posting.where(), offsets[i]
                starts = [s for s in starts if _holds(where, s + off)]
            if starts:
                found.append(doc)
        return found

    def group(self, g: Group) -> dict[bytes, set[Word]] | None:
        must: list[dict[bytes, set[Word]]] = []
        should: list[dict[bytes, set[Word]]] = []
        must_not: list[dict[bytes, set[Word]]] = []
        for occur, node in g.clauses:
            r = self.eval(node)
            if r is None:
                continue
            {"must": must, "should": should, "must_not": must_not}[occur].append(r)
        if not (must or should or must_not):
            return None
        if must:
            docs = set(must[0])
            for m in must[1:]:
                docs &= m.keys()
        else:
            docs = set()
            for s in should:
                docs |= s.keys()
        for m in must_not:
            docs -= m.keys()
        out: dict[bytes, set[Word]] = {}
        for doc in docs:
            words: set[Word] = set()
            for r in (*must, *should):
                if doc in r:
                    words |= r[doc]
            out[doc] = words
        return out

    def score(self, doc: bytes, words: set[Word]) -> float:
        """BM25 of ``doc``: the sum over the distinct words it matched by."""
        total = 0.0
        for word in sorted(words):
            found = self.cache[word]
            tf, dl = found[doc].head()
            n, sum_dl = self.stats.fields.get(word[0], (0, 0))
            if n <= 0 or sum_dl <= 0:
                continue  # only while writers are at work: a posting the statistics lack
            total += bm25(tf, dl, len(found), n, sum_dl / n)
        return total


def _snippet(
    analyzer: Analyzer, fields: Fields, words: set[Word], mark: tuple[str, str], width: int = 24
) -> str:
    """The window of ``width`` terms with the most distinct matched terms (then the most
    matches; then the first field by name, the earliest window), matched terms marked."""
    best: tuple[tuple[int, int], str] | None = None
    for f in sorted(fields):
        targets = {t for ff, t in words if ff == f}
        if not targets:
            continue
        text = fields[f]
        spans = analyzer.spans(text)
        hits = [i for i, s in enumerate(spans) if s[1] in targets]
        for i in hits:
            window = spans[i : i + width]
            inside = [s for s in window if s[1] in targets]
            rank = (len({s[1] for s in inside}), len(inside))
            if best is None or rank > best[0]:
                best = (rank, _marked(text, window, targets, mark))
    if best is None:
        for f in sorted(fields):
            spans = analyzer.spans(fields[f])[:width]
            if spans:
                return fields[f][spans[0][2] : spans[-1][3]]
        return ""
    return best[1]


def _marked(
    text: str, window: list[tuple[int, str, int, int]], targets: set[str], mark: tuple[str, str]
) -> str:
    out = []
    at = window[0][2]
    for _, term, start, end in window:
        out.append(text[at:start])
        out.append(f"{mark[0]}{text[start:end]}{mark[1]}" if term in targets else text[start:end])
        at = end
    return "".join(out)
