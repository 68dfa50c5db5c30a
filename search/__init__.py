"""Search: a full-text index (BM25) on the ringkv key-value API.

    from search import Index
    ix = Index(ring.open("data"), "docs")          # or ring.connect("h1:7071,..."); "english"
    ix.add("id1", "some text")                     # or {"title": ..., "body": ...}; replaces
    ix.add_many([(id, doc), ...]); ix.remove("id1"); ix.get("id1"); len(ix)
    for hit in ix.search('+fox -"lazy dog" title:qu*', limit=10, snippets=True):
        hit.id, hit.score, hit.fields, hit.snippet
    ix.repair()                                    # exact again after crashes, lagging replicas

Only ``get``, ``get_versioned``, ``put``, ``delete``, ``scan`` (and ``batch`` where the store
has one) are used, so the same code runs embedded and on a cluster. Query syntax:
``search.query``; analyzers: ``search.analysis``; key layout: ``search.keys``; values:
``search.records``; costs per operation: ``search.index``.

Layout
------
Every key of index ``I`` is under ``search:<len>:I:``. A document *version* is one key
``D bucket doc version`` (fields and their lengths); each (field, term) of it is one posting
key ``P field term doc version`` (tf, dl, positions) — so a term's postings are one ``scan``,
a prefix query one ``scan`` over a key range, and no value grows with the index. A version id
is a hybrid timestamp and the writer's random 4-byte id (a writer is one add, add_many or
remove at work); a writer's new version is later than every version of the document it read.

Versions and postings are never rewritten in place: each is written once under a fresh key and
later deleted, so concurrent writers never overwrite each other's and what there is to resolve
is which keys exist. The two kinds of keys every search reads whole are the exception: a
bucket's statistics (``T bucket``) and a writer's intents (``W writer``) are rewritten in
place, each put with the context of a ``get_versioned`` of it, so those scans meet one record
per bucket and per writer id, not a tombstone per write ever made (the store keeps tombstones:
an embedded store forever, a cluster until it reaps them). Only a statistics key can get
siblings (writers whose windows overlapped, below), and the writers themselves resolve them.
Every delete carries the causal context of the key it deletes (a ``get_versioned`` just
before it), so its tombstone supersedes the value on every replica, one that receives the value
only later included; a bare ``delete`` would supersede only what its coordinator's replica
holds, and on a replica that has not received the key yet the value would outlive it.

* **Which version is the document**: the highest version id among its ``D`` keys —
  everywhere, whatever the order writes arrived in. ``get`` is one scan of the document's keys.
* **Concurrent writes of one document** (from any nodes): each writer writes its version
  (record first, then postings), then *checks*: it scans the document's versions again; if
  its own is no longer the highest (or was removed), it deletes its own record and postings,
  and it deletes every lower version it finds, those it replaced included (records first, then
  postings: ``repair`` writes a version's postings only after reading its record, and reads it
  again after). Of two racing writers, the later check always sees the other's version, so
  exactly one version (the highest) and its postings remain, with no repair.
* **Intents**: before writing, a writer puts its intents — ``(op, doc, version)`` for every
  document of its add, add_many or remove, and an add's (field, term) pairs, so its postings
  can be found even when its record is gone — in its key ``W writer`` and deletes them when
  done (a writer id serves one operation at a time: ids come from a process-wide pool, and one
  whose operation raised is not reused). Every stale posting (a replaced version not yet
  cleaned, a racing loser, a crash's leftovers) belongs to a document with an intent. A search
  scans ``W`` (empty when no one is writing: one tombstone per writer id ever used) and reads
  each such document whole: it ignores its stored postings and evaluates the query on its
  highest version. So searches are exact even over a crash's leftovers.
* **Every hit is checked**: the hits a search returns, and those its ``offset`` skips, are
  read with one scan of their document's versions each (which also gives their fields). A hit
  matched by a posting of a version that is not its document's highest, or whose document has
  more than one version, becomes a suspect too and the query is evaluated again, so no stale
  posting ever makes a hit (see *Replicas that lag*).

Replicas that lag
-----------------
The rules above assume that a read sees every write that finished before it: always embedded;
on a cluster when R + W > N and a scan's members all answer (a scan asks every live member).
When replicas lag further — W = 1, writes taken by fallback nodes while owners are down —
two writers' checks can miss each other and a statistics value can be computed from a read
that missed a document. Then, until ``repair()``: a document can keep two versions (``get``
returns the highest, the same through every node once replicas converge); searches still return
exactly the documents whose highest version matches (every hit is checked), but scores (N,
n_t, avgdl), ``len`` and exclusions (``-word`` meeting a stale posting) may be off. ``repair()``
through any node, once the replicas have converged (anti-entropy), makes everything exact:
``tests/search/test_index_siblings.py`` drives writers through simulated nodes with W = R = 1
and random partial replication and checks exactly this.

Statistics (N, sum of dl per field, documents), exact under concurrent writers
------------------------------------------------------------------------------
Documents hash into 256 buckets; each bucket has one statistics key ``T bucket``. A writer
opens a *window*: it reads the bucket's key (``get_versioned``: its values and context), then
the versions of its document; writes; then closes the window by putting the key, with the
context it read — the one value it read plus its delta (new version's contribution minus the
replaced one's). If it did not read exactly one value (none yet, or siblings), it recomputes
the bucket from its documents (a scan of ``D bucket``) instead of adding a delta. Two windows
that overlap each put a value whose context does not cover the other's: the key is left with
two siblings. So after its other writes and before deleting its intents, each writer reads its
buckets' keys again and, where it finds siblings, recomputes the bucket and puts it with their
context, until it reads one value. Of two overlapping writers the later to read sees both
siblings (reads and writes meet at a quorum), and until it has resolved them it still has an
intent in the bucket — and readers recompute the buckets of documents with intents. Windows
that do not overlap are ordered, and the later one read the earlier one's document writes, so
its delta is right. Hence the sum of the buckets is exact once writers stop — on one node or
many — with no counter key whose siblings stay. A search reads every ``T`` key (one scan of at
most 256 keys; the sum of the values last scanned is kept, so a scan that finds the same
values adds nothing up) and its document frequencies are the postings it scans (of the
highest versions only, see above).

Scoring
-------
BM25 with k1 = 1.2, b = 0.75: for each distinct (field, term) a document matched by,
``idf · tf · (k1 + 1) / (tf + k1 · (1 - b + b · dl / avgdl))`` with
``idf = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))``, N the documents that have the field, n_t
those with the term in it, dl the field's term count, avgdl the mean dl; summed. Unscoped
words search every field and their fields' scores add up. A phrase scores as its words (in
the fields where the phrase occurs); a prefix ``pre*`` scores every term it expands to that
the document holds as a word of its own. Words matched only under an excluded clause add
nothing; a word matched by several clauses counts once.

Crashes
-------
A crash between any two writes (or batches) leaves readers exact (intents, above), each
document its old or its new version. ``repair()`` reads the whole index: it finishes every
intent (rewrites the postings of a highest version that has an add intent and checks again
after; deletes, by the words the intent keeps, the postings of an add whose record is gone;
deletes the versions a remove read), keeps only the highest version of every document,
rewrites every bucket whose statistics differ from its documents (read, recomputed, put with
the context read and settled, as a writer does), deletes every posting of a version that is
not its document's highest (after reading the document again) and writes the missing ones of
the highest, and deletes the intents it finished (a writer's key only if it still holds what
was read). It is safe beside writers at work; a writer it overlapped that then crashes is
finished by the next ``repair()``.
"""

from search.index import Hit, Index, RepairReport
from search.query import QueryError
from search.sortedset import SortedSet

__all__ = ["Hit", "Index", "QueryError", "RepairReport", "SortedSet"]
