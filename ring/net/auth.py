"""Authenticated cluster traffic: the cluster secret's handshake, MACed frames and datagrams,
and TLS contexts.

With a cluster secret (``ringd --secret-file``, ``ring.connect(..., secret=...)``) nothing a
node receives is acted on unless its sender proved that it knows the secret. The rules:

**Handshake** (TCP, at the hello; HMAC-SHA256). The connecting side (a client, or a node's link
to a peer) sends its hello with a fresh random ``nonce``. The node answers with its own
``nonce`` and ``proofs``: one ``HMAC(secret, "server" label, T)`` per secret it holds (its
secret, and during a rotation the old one as well), where the transcript ``T`` is the msgpack
encoding of both hellos (without the proofs): both nonces, the cluster name, the protocol
version, the roles, the names and a peer's settings. The connecting side checks the proofs
against each secret it holds (its own first) and, if one matches, answers with
``{"proof": HMAC(secret, "client" label, T), "key": i}`` (``i``: which of the node's proofs
matched); if none matches it stops with :class:`AuthenticationFailed` — it has sent nothing
but its hello, and trusts nothing the node said. The node checks that proof with its secret
``i`` and acts on nothing from the connection before. Fresh nonces on both sides make every
transcript new, so a recorded handshake does not replay; the direction labels keep a proof
from being reflected back; the transcript binds what each side claimed in its hello. Both
sides read the hello frames raw (:func:`take_frame`); the connecting side refuses any byte
after the node's answer (:func:`take_hello_answer`), which only a man in the middle can have
put there.

**Records** (after the handshake, both directions). Each side derives a key per direction
from the agreed secret and ``T`` (HMAC-SHA256 as a key derivation). The byte stream of frames
is then cut into records ``length (4 bytes) | bytes | tag (16 bytes)``, at most
:data:`RECORD_MAX` bytes each, where the tag is keyed BLAKE2b-128 over an implicit
per-direction sequence number, the length and the bytes. A receiver verifies each record before
a byte of it reaches the frame decoder; a bad tag closes the connection. Sequence numbers
make a reordered, replayed or dropped record fail its tag. Keyed BLAKE2b is a standard MAC
(RFC 7693) and costs 0.5 µs for a 64-byte record against HMAC-SHA256's 1.4 µs (0.8 against
1.6 µs at 300 bytes; HMAC-SHA256 is faster only above about 3 KiB, where a node's Python work
per byte costs far more than either), so it is the record MAC. The sender MACs each buffer it
writes (frames are coalesced per loop iteration), not each frame.

**Datagrams** (gossip over UDP). Each datagram is ``0xC1 | tags | boot id (8) | time ms (8) |
counter (8) | msgpack body | tag (16) per secret``: the sender's random boot id, its wall-clock
time and a counter it increments per datagram, and one keyed BLAKE2b-128 tag per secret it
holds (two during a rotation, so that nodes with only one of them accept it). The gossip key
is derived from the secret and the cluster name. The receiver drops a datagram whose tags
fail, whose time is more than :data:`DATAGRAM_MAX_AGE_MS` away from its own clock, or whose
counter it has already seen (a window of the last :data:`REPLAY_WINDOW` counters per boot id);
each is counted by reason. 0xC1 is a byte msgpack never uses, so an open node drops such a
datagram as undecodable, and a node with a secret drops plain msgpack as unsigned.

**Rotation**: a node holds a secret and optionally an old one (``--old-secret-file``). It
proves itself with both, accepts proofs made with either, and tags datagrams with both, so
nodes holding only the old, both, or only the new secret interoperate pairwise at every step
of a rolling restart.

This module does no IO; ``ring.net.tcp``, ``ring.net.udp``, ``ring.net.peers`` and the clients
use it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
import struct
import time
from collections.abc import Sequence
from typing import Any

import msgpack

from ring.errors import AuthenticationFailed, InvalidInput, ProtocolError

NONCE_BYTES = 32
PROOF_BYTES = 32
TAG_BYTES = 16
RECORD_MAX = 1 << 20  # bytes of frames per record; a receiver buffers at most one record
MAX_SECRETS = 2  # the secret and, during a rotation, the old one
MIN_SECRET_BYTES = 16  # shorter secrets are accepted with a warning (see weak_secret)
DATAGRAM_MAGIC = 0xC1  # never used by msgpack
DATAGRAM_HEADER = struct.Struct(">BB8sQQ")  # magic, tags, boot id, time ms, counter
DATAGRAM_MAX_AGE_MS = 60_000  # a datagram stamped further from our clock is refused
REPLAY_WINDOW = 1024  # counters remembered per sender boot id
SECRET_FILE_MAX = 1 << 16  # bytes; a larger secret file is refused (not read in part)
HELLO_MAX_BYTES = 4096  # a hello, hello answer or proof frame (a real one is a few hundred bytes)
_REPLAY_STATES_MAX = 4096  # sender boot ids remembered (idle ones are dropped first)

_SERVER_LABEL = b"ringkv-auth-1 server proof\x00"
_CLIENT_LABEL = b"ringkv-auth-1 client proof\x00"
_KEYS_LABEL = b"ringkv-auth-1 session keys\x00"
_GOSSIP_LABEL = b"ringkv-auth-1 gossip\x00"
_C2S = b"client to server"
_S2C = b"server to client"
_pack_len = struct.Struct(">I").pack
_unpack_len = struct.Struct(">I").unpack_from
_pack_seq = struct.Struct(">Q").pack
_blake2b = hashlib.blake2b
_compare = hmac.compare_digest


class AuthError(Exception):
    """Internal: a proof or a record that does not verify; ``reason`` names the counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- secrets ---------------------------------------------------------------------------------


def secret_of(value: str | bytes | bytearray, what: str = "secret") -> bytes:
    """The secret as bytes: a str is UTF-8, surrounding whitespace is stripped (as from a
    file); an empty secret raises InvalidInput."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif not isinstance(value, bytes | bytearray):
        raise InvalidInput(f"{what} must be str or bytes, not {type(value).__name__}")
    secret = bytes(value).strip()
    if not secret:
        raise InvalidInput(f"{what} is empty")
    return secret


def read_secret_file(path: str, what: str = "--secret-file") -> bytes:
    """The secret in ``path``: its content with surrounding whitespace stripped. Raises
    InvalidInput with a clear message for a missing, unreadable or empty file."""
    try:
        with open(path, "rb") as f:
            data = f.read(SECRET_FILE_MAX + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > SECRET_FILE_MAX:
        raise InvalidInput(
            f"{what} {path} is larger than {SECRET_FILE_MAX // 1024} KiB: it should hold the "
            "cluster secret only (is it the right file?)"
        )
    try:
        return secret_of(data)
    except InvalidInput:
        raise InvalidInput(f"{what} {path} is empty: put the cluster secret in it") from None


def secret_file_exposed(path: str) -> bool:
    """Whether users other than the file's owner may read it (group or others' permissions)."""
    try:
        return bool(os.stat(path).st_mode & 0o077)
    except OSError:
        return False


# docker-compose's placeholder (compose-secret.txt): public, so ringd warns when it is used.
PLACEHOLDER_SECRET = b"change-this-secret-see-README-Security"


def weak_secret(secret: bytes) -> bool:
    """Too short to resist guessing (anyone who sees a handshake can test guesses offline), or
    the placeholder everyone has."""
    return len(secret) < MIN_SECRET_BYTES or secret == PLACEHOLDER_SECRET


def _check_secrets(secrets: Sequence[bytes]) -> tuple[bytes, ...]:
    out = tuple(secrets)
    if len(out) > MAX_SECRETS or not all(isinstance(s, bytes) and s for s in out):
        raise InvalidInput(f"at most {MAX_SECRETS} non-empty secrets (the secret and an old one)")
    return out


# --- the handshake ----------------------------------------------------------------------------


def _transcript(client_hello: dict[str, Any], server_hello: dict[str, Any]) -> bytes:
    server = {k: v for k, v in server_hello.items() if k != "proofs"}
    data: bytes = msgpack.packb([client_hello, server], use_bin_type=True)
    return data


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


def _nonce_of(hello: Any) -> bytes | None:
    nonce = hello.get("nonce") if isinstance(hello, dict) else None
    if isinstance(nonce, bytes) and 16 <= len(nonce) <= 64:
        return nonce
    return None


class Session:
    """The record layer of one authenticated connection: seals what we write, opens what we
    read. ``sealer`` and ``opener`` keep the per-direction sequence numbers."""

    __slots__ = ("opener", "sealer")

    def __init__(self, secret: bytes, transcript: bytes, client: bool) -> None:
        prk = _hmac(secret, _KEYS_LABEL + transcript)
        c2s, s2c = _hmac(prk, _C2S), _hmac(prk, _S2C)
        self.sealer = Sealer(c2s if client else s2c)
        self.opener = Opener(s2c if client else c2s)


class Sealer:
    __slots__ = ("_keyed", "seq")

    def __init__(self, key: bytes) -> None:
        self._keyed = _blake2b(key=key, digest_size=TAG_BYTES)  # copied per record: cheaper
        self.seq = 0

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """``data`` as records (one, unless it is longer than RECORD_MAX)."""
        size = len(data)
        if size <= RECORD_MAX:
            header = _pack_len(size)
            h = self._keyed.copy()
            h.update(_pack_seq(self.seq) + header)
            h.update(data)
            self.seq += 1
            return b"".join((header, data, h.digest()))
        view = memoryview(data)
        parts = [self.seal(view[i : i + RECORD_MAX]) for i in range(0, size, RECORD_MAX)]
        return b"".join(parts)


class Opener:
    """Splits a stream of records, verifies each, returns the bytes they carry."""

    __slots__ = ("_buf", "_keyed", "_need", "seq")

    def __init__(self, key: bytes) -> None:
        self._keyed = _blake2b(key=key, digest_size=TAG_BYTES)
        self.seq = 0
        self._buf = bytearray()  # the start of an incomplete record
        self._need = 0  # how long _buf must grow before it holds that whole record

    def feed(self, data: bytes | bytearray) -> bytes:
        """The verified bytes of every complete record in the stream so far (b"" if none);
        raises AuthError for a record that does not verify (the stream is then unusable)."""
        buf = self._buf
        if buf:
            buf += data  # amortised: a large record arriving in pieces is copied once
            if len(buf) < self._need:
                return b""
            data = bytes(buf)
            self._buf = bytearray()
        elif type(data) is not bytes:
            data = bytes(data)
        end = len(data)
        pos = 0
        out: list[bytes | memoryview] = []
        need = 4
        while end - pos >= 4:
            (length,) = _unpack_len(data, pos)
            if length == 0 or length > RECORD_MAX:
                raise AuthError("bad_record", f"a record of {length} bytes is not valid")
            stop = pos + 4 + length + TAG_BYTES
            if stop > end:
                need = stop - pos
                break
            mac = stop - TAG_BYTES
            h = self._keyed.copy()
            h.update(_pack_seq(self.seq))
            # Large records are hashed and handed on through views: one copy, in the join.
            body: bytes | memoryview = data if length < 4096 else memoryview(data)
            h.update(body[pos:mac])
            if not _compare(h.digest(), data[mac:stop]):
                raise AuthError("bad_record", f"record {self.seq} failed its MAC")
            self.seq += 1
            out.append(body[pos + 4 : mac])
            pos = stop
        if pos < end:
            self._buf = bytearray(memoryview(data)[pos:])
            self._need = need
        first = out[0] if len(out) == 1 else None
        return first if type(first) is bytes else b"".join(out)


class ClientHandshake:
    """The connecting side: ``hello`` to send; ``finish(answer)`` checks the node's proofs and
    returns the proof frame to send and the session."""

    __slots__ = ("hello", "secrets")

    def __init__(self, secrets: Sequence[bytes], hello: dict[str, Any]) -> None:
        self.secrets = _check_secrets(secrets)
        self.hello = {**hello, "nonce": os.urandom(NONCE_BYTES)}

    def finish(
        self, answer: dict[str, Any], node: str = "the node"
    ) -> tuple[dict[str, Any], Session]:
        proofs = answer.get("proofs")
        if _nonce_of(answer) is None or not isinstance(proofs, list) or not proofs:
            raise AuthenticationFailed(
                f"authentication failed: {node} runs without a cluster secret, but this side "
                "has one (give the node --secret-file, or connect without a secret)"
            )
        transcript = _transcript(self.hello, answer)
        for secret in self.secrets:
            expected = _hmac(secret, _SERVER_LABEL + transcript)
            for i, proof in enumerate(proofs[:MAX_SECRETS]):
                if isinstance(proof, bytes) and _compare(expected, proof):
                    mine = _hmac(secret, _CLIENT_LABEL + transcript)
                    return {"proof": mine, "key": i}, Session(secret, transcript, client=True)
        raise AuthenticationFailed(
            f"authentication failed: {node} could not prove it knows this side's cluster "
            "secret: the secrets differ (check the secret file on both sides)"
        )


class ServerHandshake:
    """The node's side: ``answer(client hello, our hello)`` adds our nonce and proofs (or
    raises AuthError when the client sent no nonce: it has no secret); ``verify(frame)``
    checks the client's proof and returns the session."""

    __slots__ = ("_transcript", "secrets")

    def __init__(self, secrets: Sequence[bytes]) -> None:
        self.secrets = _check_secrets(secrets)
        self._transcript = b""

    def answer(self, client_hello: dict[str, Any], server_hello: dict[str, Any]) -> dict[str, Any]:
        if _nonce_of(client_hello) is None:
            raise AuthError(
                "no_secret",
                "authentication failed: this node requires the cluster secret "
                "(ring.connect(..., secret=...), ringctl --secret-file, ringd --secret-file)",
            )
        hello = {**server_hello, "nonce": os.urandom(NONCE_BYTES)}
        self._transcript = _transcript(client_hello, hello)
        hello["proofs"] = [_hmac(s, _SERVER_LABEL + self._transcript) for s in self.secrets]
        return hello

    def verify(self, frame: Any) -> Session:
        transcript = self._transcript
        assert transcript, "answer() first"
        if not isinstance(frame, dict) or not isinstance(frame.get("proof"), bytes):
            raise AuthError("bad_proof", "authentication failed: expected the client's proof")
        key = frame.get("key")
        if type(key) is not int or not 0 <= key < len(self.secrets):
            raise AuthError("bad_proof", "authentication failed: the proof names no secret")
        secret = self.secrets[key]
        if not _compare(_hmac(secret, _CLIENT_LABEL + transcript), frame["proof"]):
            raise AuthError("bad_proof", "authentication failed: wrong cluster secret")
        return Session(secret, transcript, client=False)


def take_frame(buf: bytearray, limit: int) -> tuple[bool, Any]:
    """Remove one whole frame from the front of ``buf``: ``(True, value)``, or ``(False,
    None)`` while it is incomplete. For the hello and proof only, before the record layer:
    ValueError for a frame longer than ``limit`` or not one msgpack value."""
    if len(buf) < 4:
        return False, None
    (length,) = _unpack_len(buf, 0)
    if length == 0 or length > limit:
        raise ValueError(f"a hello frame of {length} bytes is not valid (at most {limit})")
    if len(buf) < 4 + length:
        return False, None
    body = bytes(buf[4 : 4 + length])
    del buf[: 4 + length]
    try:
        value = msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:
        raise ValueError(f"frame is not one msgpack value: {exc}") from None
    return True, value


def take_hello_answer(buf: bytearray) -> tuple[bool, Any]:
    """For a connecting side with a secret: the node's hello answer from the raw bytes read so
    far (``(False, None)`` while incomplete). A node sends nothing after its answer until it
    has our proof, so any byte after it was put there by someone else (a man in the middle
    appending unauthenticated frames): AuthenticationFailed. A frame that is not one msgpack
    value of at most HELLO_MAX_BYTES is a ProtocolError."""
    try:
        whole, obj = take_frame(buf, HELLO_MAX_BYTES)
    except ValueError as exc:
        raise ProtocolError(f"bad hello answer from the node: {exc}") from None
    if whole and buf:
        raise AuthenticationFailed(
            f"authentication failed: {len(buf)} bytes arrived after the node's hello answer, "
            "before this side's proof: the connection was tampered with"
        )
    return whole, obj


# --- datagrams ---------------------------------------------------------------------------------


_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1


class _Window:
    __slots__ = ("bits", "last_ms", "top")

    def __init__(self) -> None:
        self.top = -1  # the highest counter seen
        self.bits = 0  # bit i: counter top - i was seen
        self.last_ms = 0

    def admit(self, counter: int) -> bool:
        if counter > self.top:
            shift = counter - self.top
            kept = (self.bits << shift) & _WINDOW_MASK if shift < REPLAY_WINDOW else 0
            self.bits = kept | 1
            self.top = counter
            return True
        age = self.top - counter
        if age >= REPLAY_WINDOW or self.bits >> age & 1:
            return False
        self.bits |= 1 << age
        return True


class GossipAuth:
    """Seals our datagrams and opens others' (see the module docstring). ``open`` returns the
    body, or raises AuthError whose ``reason`` is ``unsigned``, ``bad_mac``, ``own`` (our own
    datagram, reflected back to us), ``stale`` or ``replay``."""

    def __init__(self, secrets: Sequence[bytes], cluster: str) -> None:
        label = _GOSSIP_LABEL + cluster.encode("utf-8")
        self.keys = tuple(_hmac(s, label) for s in _check_secrets(secrets))
        if not self.keys:
            raise InvalidInput("GossipAuth needs a secret")
        self.boot = os.urandom(8)
        self.counter = 0
        self._windows: dict[bytes, _Window] = {}

    def seal(self, body: bytes, now_ms: int | None = None) -> bytes:
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        self.counter += 1
        header = DATAGRAM_HEADER.pack(
            DATAGRAM_MAGIC, len(self.keys), self.boot, now_ms, self.counter
        )
        tags = []
        for key in self.keys:
            h = _blake2b(header, key=key, digest_size=TAG_BYTES)
            h.update(body)
            tags.append(h.digest())
        return b"".join((header, body, *tags))

    def open(self, data: bytes, now_ms: int | None = None) -> bytes:
        size = len(data)
        if size < DATAGRAM_HEADER.size + TAG_BYTES or data[0] != DATAGRAM_MAGIC:
            raise AuthError("unsigned", "a datagram without the cluster's MAC")
        _, ntags, boot, stamp, counter = DATAGRAM_HEADER.unpack_from(data)
        body_end = size - ntags * TAG_BYTES
        if not 1 <= ntags <= MAX_SECRETS or body_end < DATAGRAM_HEADER.size:
            raise AuthError("unsigned", "a datagram with a malformed MAC header")
        signed = data[:body_end]
        tags = [
            data[body_end + i * TAG_BYTES : body_end + (i + 1) * TAG_BYTES] for i in range(ntags)
        ]
        ok = False
        for key in self.keys:
            digest = _blake2b(signed, key=key, digest_size=TAG_BYTES).digest()
            if any(_compare(digest, tag) for tag in tags):
                ok = True
                break
        if not ok:
            raise AuthError("bad_mac", "a datagram whose MAC is not the cluster's")
        if boot == self.boot:
            raise AuthError("own", "a datagram of this node's own, sent back to it (reflected)")
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if abs(now_ms - stamp) > DATAGRAM_MAX_AGE_MS:
            raise AuthError(
                "stale", f"a datagram stamped {(now_ms - stamp) / 1000:.0f} s from our clock"
            )
        window = self._windows.get(boot)
        if window is None:
            if len(self._windows) >= _REPLAY_STATES_MAX:
                self._prune(now_ms)
            window = self._windows[boot] = _Window()
        if not window.admit(counter):
            raise AuthError("replay", "a datagram seen before (replayed or duplicated)")
        window.last_ms = now_ms
        return data[DATAGRAM_HEADER.size : body_end]

    def _prune(self, now_ms: int) -> None:
        """Forget senders idle for longer than a datagram may be old (their datagrams are
        refused as stale anyway), else the longest idle half."""
        windows = self._windows
        for boot in [b for b, w in windows.items() if now_ms - w.last_ms > 2 * DATAGRAM_MAX_AGE_MS]:
            del windows[boot]
        if len(windows) >= _REPLAY_STATES_MAX:
            for boot in sorted(windows, key=lambda b: windows[b].last_ms)[: len(windows) // 2]:
                del windows[boot]


# --- rate-limited refusal logs ------------------------------------------------------------------


class RefusalLog:
    """Whether to log a refusal from ``source`` now: the first at once, then at most one per
    ``every_s`` per source, saying how many were refused meanwhile; and at most
    ``max_lines`` per ``every_s`` overall, however many sources there are (spoofed datagram
    sources are free): past that, refusals are only tallied, and ``summary`` returns the tally
    once the next period begins, for one line "N refusals from M sources"."""

    def __init__(self, every_s: float = 60.0, max_sources: int = 1024, max_lines: int = 10) -> None:
        self.every_s = every_s
        self.max_sources = max_sources
        self.max_lines = max_lines
        self._seen: dict[str, tuple[float, int]] = {}  # source -> (last logged, refused since)
        self._period = -1e18  # when the current period of max_lines began
        self._lines = 0  # lines allowed in it
        self._held = 0  # refusals not logged for the overall limit, since the last summary
        self._held_sources: set[str] = set()  # their sources (at most max_sources counted)
        self._more_sources = 0  # sources beyond that

    def due(self, source: str, now: float | None = None) -> int | None:
        """None: do not log now; else how many more were refused since the last line."""
        now = time.monotonic() if now is None else now
        self._roll(now)
        seen = self._seen.get(source)
        if seen is not None and now - seen[0] < self.every_s:
            self._seen[source] = (seen[0], seen[1] + 1)
            return None
        if self._lines >= self.max_lines:
            self._held += 1
            if source in self._held_sources:
                pass
            elif len(self._held_sources) < self.max_sources:
                self._held_sources.add(source)
            else:
                self._more_sources += 1
            return None
        self._lines += 1
        if seen is None and len(self._seen) >= self.max_sources:
            self._seen.clear()
        self._seen[source] = (now, 0)
        return 0 if seen is None else seen[1]

    def _roll(self, now: float) -> None:
        if now - self._period >= self.every_s:
            self._period = now
            self._lines = 0

    def summary(self, now: float | None = None) -> tuple[int, int] | None:
        """``(refusals, sources)`` not logged for the overall limit, once a new period began
        (then forgotten); None when there is nothing to report yet."""
        now = time.monotonic() if now is None else now
        if not self._held or now - self._period < self.every_s:
            return None
        out = (self._held, len(self._held_sources) + self._more_sources)
        self._held, self._more_sources = 0, 0
        self._held_sources = set()
        return out


# --- what a node and a client hold ------------------------------------------------------------


class Security:
    """A node's secrets and TLS contexts. ``secrets`` is empty for an open cluster; ``server_ssl``
    and ``client_ssl`` are None without TLS."""

    def __init__(
        self,
        secrets: Sequence[bytes] = (),
        cluster: str = "ringkv",
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.secrets = _check_secrets(secrets)
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.gossip = GossipAuth(self.secrets, cluster) if self.secrets else None
        self.refusals = RefusalLog()
        self.exposed_files: tuple[str, ...] = ()  # secret files others may read (ringd warns)


class ClientSecurity:
    """What a client connects with: its secret (one, or two for a client that bridges a
    rotation) and the TLS context that checks nodes' certificates."""

    __slots__ = ("secrets", "ssl")

    def __init__(
        self, secrets: Sequence[bytes] = (), ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.secrets = _check_secrets(secrets)
        self.ssl = ssl_context

    @classmethod
    def of(
        cls,
        secret: str | bytes | None = None,
        tls_ca: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> ClientSecurity | None:
        """From ``ring.connect``'s arguments; None when there is nothing to add (plain)."""
        if secret is None and tls_ca is None and ssl_context is None:
            return None
        secrets = () if secret is None else (secret_of(secret),)
        if ssl_context is None and tls_ca is not None:
            ssl_context = client_context(tls_ca)
        return cls(secrets, ssl_context)


# --- TLS -----------------------------------------------------------------------------------------


def server_context(cert: str, key: str, ca: str | None) -> ssl.SSLContext:
    """A node's listening context: its certificate; with ``ca``, a connecting side that shows a
    certificate must have one signed by it (nodes must; clients need none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert, key)
    if ca is not None:
        _load_ca(ctx, ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(ca: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A connecting side's context: the node's certificate must be signed by ``ca`` and name
    the host connected to (an IP or DNS subject alternative name); a node also shows its own
    certificate (``cert``, ``key``) to its peers."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and hostname checks
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(ctx, ca)
    if cert is not None and key is not None:
        _load_chain(ctx, cert, key)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise InvalidInput(
            f"cannot read the TLS certificate or key: {exc.filename}: no such file"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(
            f"cannot load the TLS certificate {cert} with key {key}: {exc}"
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca: str) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except FileNotFoundError:
        raise InvalidInput(f"cannot read the TLS CA file {ca}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(f"cannot load the TLS CA file {ca}: {exc}") from None


def peer_has_certificate(transport: Any) -> bool:
    """Whether the TLS peer on ``transport`` showed a certificate the CA signed (the context
    refused the connection already if it showed a bad one)."""
    cert = transport.get_extra_info("peercert") if transport is not None else None
    return bool(cert)
