"""The object store: an append-only SQLite log with one global revision, after kine.

Upstream counterpart: k3s-io/kine `pkg/logstructured/logstructured.go` and `pkg/drivers/sqlite/sqlite.go`.
Every create, update and delete appends one row (with the revision it supersedes, as kine's
prev_revision; the one writer checks conflicts in memory, so no unique index is needed); its `rev` (an INTEGER PRIMARY KEY) is the object's
`resourceVersion` and the revision of the whole store, so resourceVersions increase across all kinds.
The current state is the newest row of each key; compaction deletes superseded rows below a revision,
and a watch that asks for history below it gets 410 Expired.

vdisk has one writer process, so the store keeps the current objects and the recent history in memory
and feeds watchers from the commit path instead of polling the table (kine polls because many
apiservers may share one database). SQLite runs in WAL mode with synchronous=NORMAL: a commit is
durable against a crash of vdisk; a power cut may lose the last transactions but never corrupts the log.

Stored objects are treated as immutable: callers get the stored dict and must copy before changing it.
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import gone_expired

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ResourceId = tuple[str, str]  # (group, plural) of the stored objects

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    rev      INTEGER PRIMARY KEY,
    key      TEXT    NOT NULL,
    created  INTEGER NOT NULL,
    deleted  INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    value    BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def clone(obj: Obj) -> Obj:
    """A deep copy of a JSON object (orjson round trip: ~10x faster than copy.deepcopy)."""
    copied: Obj = orjson.loads(orjson.dumps(obj))
    return copied


@dataclass(slots=True)
class Event:
    rev: int
    type: str
    rid: ResourceId
    namespace: str
    name: str
    obj: Obj
    prev: Obj | None  # the object before this change (None for ADDED)
    cache: dict[tuple[str, str, str], bytes] | None = None  # serialized forms, shared by watchers


def make_key(rid: ResourceId, namespace: str, name: str) -> str:
    group, plural = rid
    return f"/{group or 'core'}/{plural}/{namespace}/{name}" if namespace else f"/{group or 'core'}/{plural}/{name}"


def split_key(key: str) -> tuple[ResourceId, str, str]:
    parts = key.split("/")
    group = "" if parts[1] == "core" else parts[1]
    if len(parts) == 5:
        return (group, parts[2]), parts[3], parts[4]
    return (group, parts[2]), "", parts[3]


class StoreConflict(Exception):
    """The stored object's revision differs from the expected one."""

    def __init__(self, current: Obj | None):
        super().__init__("conflict")
        self.current = current


class Store:
    def __init__(self, path: str, history_retain: int = 10000):
        """`path` is the SQLite file (":memory:" for tests); `history_retain` revisions stay watchable."""
        self.path = path
        self.history_retain = history_retain
        self.revision = 0
        self.compact_revision = 0
        self._data: dict[ResourceId, dict[str, dict[str, Obj]]] = {}
        self._history: deque[Event] = deque()
        self._listeners: list[Callable[[Event], None]] = []
        self._db: sqlite3.Connection | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------

    def open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints copy the WAL into the database and fsync it: tens of ms. The writer never runs them
        # (that stall would land on some request's latency); checkpoint() does, from another thread.
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.executescript(_SCHEMA)
        self._db = db
        row = db.execute("SELECT value FROM meta WHERE name='compact_rev'").fetchone()
        self.compact_revision = row[0] if row else 0
        self._load()

    def close(self) -> None:
        if self._db is not None:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

    def checkpoint(self) -> None:
        """Move the WAL into the database file without blocking the writer (call from a worker thread)."""
        if self.path == ":memory:":
            return
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def _load(self) -> None:
        assert self._db is not None
        t0 = time.monotonic()
        n = 0
        for rev, key, _created, deleted, _prev, value in self._db.execute(
            "SELECT rev, key, created, deleted, prev_rev, value FROM log ORDER BY rev"
        ):
            n += 1
            rid, ns, name = split_key(key)
            obj = orjson.loads(value)
            bucket = self._data.setdefault(rid, {}).setdefault(ns, {})
            prev = bucket.get(name)
            if deleted:
                bucket.pop(name, None)
                typ = DELETED
            else:
                bucket[name] = obj
                typ = MODIFIED if prev is not None else ADDED
            if rev > self.compact_revision:
                self._history.append(Event(rev, typ, rid, ns, name, obj, prev))
            self.revision = rev
        self.revision = max(self.revision, self.compact_revision)
        log.info("store loaded rows=%d revision=%d seconds=%.3f", n, self.revision, time.monotonic() - t0)

    # --- reads --------------------------------------------------------------------------------------------

    def get(self, rid: ResourceId, namespace: str, name: str) -> Obj | None:
        return self._data.get(rid, {}).get(namespace, {}).get(name)

    def list(self, rid: ResourceId, namespace: str | None = None) -> builtins.list[Obj]:
        """Objects of one resource, sorted by namespace and name (etcd key order)."""
        by_ns = self._data.get(rid)
        if not by_ns:
            return []
        if namespace is not None:
            bucket = by_ns.get(namespace) or {}
            return [bucket[n] for n in sorted(bucket)]
        out: builtins.list[Obj] = []
        for ns in sorted(by_ns):
            bucket = by_ns[ns]
            out.extend(bucket[n] for n in sorted(bucket))
        return out

    def count(self, rid: ResourceId, namespace: str | None = None) -> int:
        by_ns = self._data.get(rid) or {}
        if namespace is not None:
            return len(by_ns.get(namespace) or {})
        return sum(len(b) for b in by_ns.values())

    def resources(self) -> builtins.list[ResourceId]:
        return list(self._data)

    def iter_all(self) -> Iterator[tuple[ResourceId, str, Obj]]:
        for rid, by_ns in list(self._data.items()):
            for ns, bucket in list(by_ns.items()):
                for obj in list(bucket.values()):
                    yield rid, ns, obj

    # --- writes -------------------------------------------------------------------------------------------

    def create(self, rid: ResourceId, namespace: str, name: str, obj: Obj) -> Obj:
        """Store a new object; sets metadata.resourceVersion. Raises StoreConflict if it exists."""
        bucket = self._data.setdefault(rid, {}).setdefault(namespace, {})
        if name in bucket:
            raise StoreConflict(bucket[name])
        rev = self.revision + 1
        obj["metadata"]["resourceVersion"] = str(rev)
        self._append(rev, make_key(rid, namespace, name), created=1, deleted=0, prev_rev=0, obj=obj)
        bucket[name] = obj
        self._emit(Event(rev, ADDED, rid, namespace, name, obj, None))
        return obj

    def update(self, rid: ResourceId, namespace: str, name: str, obj: Obj, expect_rev: int | None = None) -> Obj:
        """Replace an existing object. `expect_rev` guards against lost updates (StoreConflict)."""
        bucket = self._data.get(rid, {}).get(namespace, {})
        current = bucket.get(name)
        if current is None:
            raise StoreConflict(None)
        cur_rev = int(current["metadata"]["resourceVersion"])
        if expect_rev is not None and expect_rev != cur_rev:
            raise StoreConflict(current)
        rev = self.revision + 1
        obj["metadata"]["resourceVersion"] = str(rev)
        self._append(rev, make_key(rid, namespace, name), created=0, deleted=0, prev_rev=cur_rev, obj=obj)
        bucket[name] = obj
        self._emit(Event(rev, MODIFIED, rid, namespace, name, obj, current))
        return obj

    def delete(self, rid: ResourceId, namespace: str, name: str, expect_rev: int | None = None) -> Obj:
        """Remove an object; returns its last state with the deletion revision as resourceVersion."""
        bucket = self._data.get(rid, {}).get(namespace, {})
        current = bucket.get(name)
        if current is None:
            raise StoreConflict(None)
        cur_rev = int(current["metadata"]["resourceVersion"])
        if expect_rev is not None and expect_rev != cur_rev:
            raise StoreConflict(current)
        rev = self.revision + 1
        final = dict(current)
        final["metadata"] = dict(current["metadata"], resourceVersion=str(rev))
        self._append(rev, make_key(rid, namespace, name), created=0, deleted=1, prev_rev=cur_rev, obj=final)
        del bucket[name]
        if not bucket:
            self._data[rid].pop(namespace, None)
        self._emit(Event(rev, DELETED, rid, namespace, name, final, current))
        return final

    def _append(self, rev: int, key: str, created: int, deleted: int, prev_rev: int, obj: Obj) -> None:
        assert self._db is not None
        self._db.execute(
            "INSERT INTO log (rev, key, created, deleted, prev_rev, value) VALUES (?, ?, ?, ?, ?, ?)",
            (rev, key, created, deleted, prev_rev, orjson.dumps(obj)),
        )
        self.revision = rev

    # --- watch --------------------------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call `listener` synchronously after every committed change; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: Event) -> None:
        self._history.append(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken watcher must never break a write
                log.exception("store listener failed rev=%d", event.rev)

    def history_since(self, rev: int) -> builtins.list[Event]:
        """Events after `rev`, oldest first. 410 Expired if they were compacted away."""
        if rev < self.compact_revision:
            raise gone_expired(f"too old resource version: {rev} ({self.compact_revision})")
        if rev >= self.revision:
            return []
        hist = self._history
        # Binary search on the deque (random access is O(n/64) for deques; fine at these sizes).
        lo, hi = 0, len(hist)
        while lo < hi:
            mid = (lo + hi) // 2
            if hist[mid].rev <= rev:
                lo = mid + 1
            else:
                hi = mid
        return [hist[i] for i in range(lo, len(hist))]

    # --- compaction ---------------------------------------------------------------------------------------

    def compact(self, keep: int | None = None) -> int:
        """Forget history older than the newest `keep` revisions; returns the new compact revision."""
        keep = self.history_retain if keep is None else keep
        target = self.revision - keep
        if target <= self.compact_revision:
            return self.compact_revision
        assert self._db is not None
        t0 = time.monotonic()
        # Drop every row at or below target that is not the newest row of its key at target,
        # and the newest one too when it records a deletion (kine: compact.go).
        cur = self._db.execute(
            """DELETE FROM log WHERE rev <= :t AND (
                   rev < (SELECT MAX(l2.rev) FROM log l2 WHERE l2.key = log.key AND l2.rev <= :t)
                   OR deleted = 1)""",
            {"t": target},
        )
        self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('compact_rev', ?)", (target,))
        self.compact_revision = target
        while self._history and self._history[0].rev <= target:
            self._history.popleft()
        log.info("store compacted revision=%d rows_deleted=%d seconds=%.3f", target, cur.rowcount,
                 time.monotonic() - t0)
        return target
