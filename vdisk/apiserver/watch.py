"""Watch fan-out: store events to the watchers of each resource.

Upstream counterpart: k8s.io/apiserver pkg/storage/cacher (the watch cache) and kine's
broadcaster.go. The store calls `WatchHub.dispatch` synchronously after every commit, so a watcher
registered and primed (initial objects or history replay) in the same synchronous step can never
miss or duplicate an event. A watcher whose queue fills up is closed ("slow consumer"); its client
re-watches from the last resourceVersion it saw, as client-go's reflector does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .store import ADDED, DELETED, MODIFIED, Event, ResourceId, Store

log = logging.getLogger(__name__)

Obj = dict[str, Any]
BOOKMARK = "BOOKMARK"
QUEUE_LIMIT = 20000


@dataclass(eq=False)
class Watcher:
    rid: ResourceId
    namespace: str | None
    predicate: Callable[[Obj], bool] | None
    queue: asyncio.Queue[tuple[str, Obj | int, Event | None]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False
    last_rev: int = 0
    bookmarks: bool = False

    def _matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj.get("metadata", {}).get("namespace", "") != self.namespace:
            return False
        return self.predicate is None or self.predicate(obj)

    def translate(self, ev: Event) -> str | None:
        """The event type this watcher sees: objects entering or leaving a selector are ADDED/DELETED."""
        if ev.type == ADDED:
            return ADDED if self._matches(ev.obj) else None
        if ev.type == DELETED:
            return DELETED if self._matches(ev.prev) else None
        now, before = self._matches(ev.obj), self._matches(ev.prev)
        if now and before:
            return MODIFIED
        if now:
            return ADDED
        if before:
            return DELETED
        return None

    def offer(self, ev: Event) -> None:
        if self.overflowed:
            return
        typ = self.translate(ev)
        if typ is None:
            return
        try:
            self.queue.put_nowait((typ, ev.obj, ev))
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("watcher too slow, closing resource=%s/%s", *self.rid)
            try:
                self.queue.put_nowait(("CLOSE", 0, None))
            except asyncio.QueueFull:
                pass

    def bookmark(self, rev: int) -> None:
        if not self.overflowed:
            try:
                self.queue.put_nowait((BOOKMARK, rev, None))
            except asyncio.QueueFull:
                pass


class WatchHub:
    def __init__(self, store: Store):
        self.store = store
        self._watchers: dict[ResourceId, set[Watcher]] = {}
        self._any: set[Callable[[Event], None]] = set()
        store.subscribe(self.dispatch)

    def dispatch(self, ev: Event) -> None:
        for w in tuple(self._watchers.get(ev.rid, ())):
            w.offer(ev)

    def add(self, watcher: Watcher) -> None:
        self._watchers.setdefault(watcher.rid, set()).add(watcher)

    def remove(self, watcher: Watcher) -> None:
        ws = self._watchers.get(watcher.rid)
        if ws is not None:
            ws.discard(watcher)

    def count(self) -> int:
        return sum(len(ws) for ws in self._watchers.values())

    def bookmark_all(self) -> None:
        rev = self.store.revision
        for ws in self._watchers.values():
            for w in ws:
                if w.bookmarks:
                    w.bookmark(rev)

    def start(self, rid: ResourceId, namespace: str | None, predicate: Callable[[Obj], bool] | None,
              resource_version: str | None, send_initial: bool | None) -> tuple[Watcher, list[tuple[str, Obj]]]:
        """Register a watcher and return the events to send first (initial objects or replayed history).

        Runs without awaiting, so nothing can be committed between the snapshot and the registration.
        """
        watcher = Watcher(rid, namespace, predicate)
        initial: list[tuple[str, Obj]] = []
        rv = resource_version or ""
        if rv in ("", "0") or send_initial:
            for obj in self.store.list(rid, namespace):
                if watcher._matches(obj):
                    initial.append((ADDED, obj))
            watcher.last_rev = self.store.revision
        else:
            try:
                since = int(rv)
            except ValueError:
                from .errors import bad_request

                raise bad_request(f"invalid resource version: {rv}") from None
            for ev in self.store.history_since(since):
                if ev.rid != rid:
                    continue
                typ = watcher.translate(ev)
                if typ is not None:
                    initial.append((typ, ev.obj))
            watcher.last_rev = max(since, self.store.revision)
        self.add(watcher)
        return watcher, initial


__all__ = ["BOOKMARK", "MODIFIED", "WatchHub", "Watcher"]
