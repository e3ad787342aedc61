"""A small controller runtime: informers, a rate-limited work queue, reconcile(key), events.

Upstream counterparts: client-go tools/cache (reflector + indexer), util/workqueue (de-duplicating,
rate-limited queue) and controller-runtime's reconcile contract (pkg/reconcile/reconcile.go):

- reconcile is level-based: it gets a key (namespace, name), never what changed;
- raising an exception retries with exponential backoff (5 ms doubling, capped);
- `Terminal` is logged and not retried; `Result(requeue_after=s)` waits on time;
- a 409 Conflict retries at once (the cache was stale), logged at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .client import EVENT, ApiError, Client, Kind

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Result:
    requeue_after: float | None = None


class Terminal(Exception):
    """A spec that cannot work: report it (event/condition), do not retry."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- informer -------------------------------------------------------------------------------------------------

Handler = Callable[[str, Obj, Obj | None], None]


class Informer:
    """List + watch one kind into a local cache; calls handlers on every change (and on relists)."""

    def __init__(self, client: Client, kind: Kind, namespace: str | None = None):
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.cache: dict[Key, Obj] = {}
        self.synced = asyncio.Event()
        self._handlers: list[Handler] = []
        self.resource_version = ""

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)
        for obj in list(self.cache.values()):
            handler("ADDED", obj, None)

    def get(self, namespace: str, name: str) -> Obj | None:
        return self.cache.get((namespace if self.kind.namespaced else "", name))

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self.cache.values())
        return [o for (ns, _), o in self.cache.items() if ns == namespace]

    def _emit(self, typ: str, obj: Obj, old: Obj | None) -> None:
        for h in self._handlers:
            try:
                h(typ, obj, old)
            except Exception:
                log.exception("informer handler failed kind=%s", self.kind.kind)

    def _apply(self, typ: str, obj: Obj) -> None:
        k = key_of(obj)
        old = self.cache.get(k)
        if typ == "DELETED":
            self.cache.pop(k, None)
            self._emit("DELETED", obj, old)
        else:
            self.cache[k] = obj
            self._emit("MODIFIED" if old is not None else "ADDED", obj, old)

    async def _relist(self) -> None:
        items, rv = await self.client.list(self.kind, self.namespace)
        fresh = {key_of(o): o for o in items}
        for k in list(self.cache):
            if k not in fresh:
                gone = self.cache.pop(k)
                self._emit("DELETED", gone, gone)
        for o in items:
            self._apply("MODIFIED" if key_of(o) in self.cache else "ADDED", o)
        self.resource_version = rv
        self.synced.set()

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._relist()
                backoff = 0.1
                while True:
                    async for typ, obj in self.client.watch(self.kind, self.namespace, self.resource_version):
                        rv = (obj.get("metadata") or {}).get("resourceVersion")
                        if rv:
                            self.resource_version = rv
                        if typ in ("ADDED", "MODIFIED", "DELETED"):
                            self._apply(typ, obj)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status.code == 410:
                    log.debug("watch expired, relisting kind=%s", self.kind.kind)
                    continue
                log.warning("watch failed kind=%s code=%s message=%s", self.kind.kind, exc.status.code,
                            exc.status.message)
            except Exception as exc:
                log.warning("watch failed kind=%s error=%s", self.kind.kind, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


# --- work queue -----------------------------------------------------------------------------------------------

class WorkQueue:
    """De-duplicating queue: a key is processed by one worker at a time; re-adds while busy run after."""

    BASE_DELAY = 0.005
    MAX_DELAY = 60.0

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}

    def add(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        when = loop.time() + delay
        if existing is not None and existing.when() <= when:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: Key) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = min(self.BASE_DELAY * (2 ** n), self.MAX_DELAY)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def __len__(self) -> int:
        return self._queue.qsize()


# --- events ---------------------------------------------------------------------------------------------------

class EventRecorder:
    """core/v1 Events about objects; repeats of the same event bump `count` instead of piling up."""

    def __init__(self, client: Client, component: str, host: str = ""):
        self.client = client
        self.component = component
        self.host = host
        self._seen: dict[tuple[str, str, str, str, str], tuple[str, str, int]] = {}

    async def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        ref = {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""), "name": meta.get("name", ""),
               "namespace": meta.get("namespace", ""), "uid": meta.get("uid", ""),
               "resourceVersion": meta.get("resourceVersion", "")}
        key = (meta.get("uid", ""), type_, reason, message, ns)
        now = now_rfc3339()
        try:
            seen = self._seen.get(key)
            if seen is not None:
                name, first, count = seen
                await self.client.patch(EVENT, name, {"count": count + 1, "lastTimestamp": now}, namespace=ns)
                self._seen[key] = (name, first, count + 1)
                return
            name = f"{meta.get('name', 'object')}.{time.time_ns():x}"[:253]
            await self.client.create(EVENT, {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": ref, "reason": reason, "message": message, "type": type_,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": self.component, "reportingInstance": self.host,
            }, namespace=ns)
            self._seen[key] = (name, now, 1)
            if len(self._seen) > 4096:
                self._seen.pop(next(iter(self._seen)))
        except ApiError as exc:
            if exc.status.code == 404 and key in self._seen:  # the event expired: start a new one
                del self._seen[key]
                await self.event(obj, type_, reason, message)
                return
            log.warning("event not recorded reason=%s code=%s", reason, exc.status.code)


# --- controller -----------------------------------------------------------------------------------------------

Reconcile = Callable[[Key], Awaitable[Result | None]]
Mapper = Callable[[Obj], Iterable[Key]]


class Controller:
    """Runs `reconcile(key)` for keys enqueued by watched informers, with retries."""

    def __init__(self, name: str, reconcile: Reconcile, workers: int = 1):
        self.name = name
        self.reconcile = reconcile
        self.queue = WorkQueue()
        self.workers = workers

    def watch(self, informer: Informer, mapper: Mapper | None = None) -> None:
        """Enqueue the keys `mapper(obj)` returns (default: the object's own key) on every change."""
        mapper = mapper or (lambda o: [key_of(o)])

        def handler(typ: str, obj: Obj, old: Obj | None) -> None:
            for k in mapper(obj):
                self.queue.add(k)
            if old is not None and typ == "MODIFIED":
                for k in mapper(old):
                    self.queue.add(k)

        informer.add_handler(handler)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(self.workers):
                tg.create_task(self._worker())

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            t0 = time.monotonic()
            try:
                result = await self.reconcile(key)
                self.queue.forget(key)
                if result is not None and result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            except asyncio.CancelledError:
                raise
            except Terminal as exc:
                self.queue.forget(key)
                log.warning("reconcile terminal controller=%s key=%s/%s reason=%s message=%s", self.name, *key,
                            exc.reason, exc.message)
            except ApiError as exc:
                if exc.status.code == 409:
                    log.debug("reconcile conflict, retrying controller=%s key=%s/%s", self.name, *key)
                    self.queue.add_after(key, 0.01 + random.random() * 0.02)
                else:
                    delay = self.queue.add_rate_limited(key)
                    log.warning("reconcile failed controller=%s key=%s/%s code=%s message=%s retry_in=%.3f",
                                self.name, *key, exc.status.code, exc.status.message, delay)
            except Exception:
                delay = self.queue.add_rate_limited(key)
                log.exception("reconcile failed controller=%s key=%s/%s retry_in=%.3f", self.name, *key, delay)
            finally:
                self.queue.done(key)
                log.debug("reconciled controller=%s key=%s/%s ms=%.1f", self.name, *key,
                          (time.monotonic() - t0) * 1000)


def set_condition(conditions: list[Obj], cond_type: str, status: str, reason: str, message: str,
                  now: str | None = None, **extra: Any) -> list[Obj]:
    """Conditions with `cond_type` set; lastTransitionTime moves only when the status flips (CDI conditions.go)."""
    now = now or now_rfc3339()
    out = []
    found = False
    for c in conditions:
        if c.get("type") == cond_type:
            found = True
            new = {**c, "status": status, "reason": reason, "message": message, **extra}
            if new == c:
                out.append(c)  # unchanged: no timestamp churn, so no status write and no reconcile loop
                continue
            if c.get("status") != status or "lastTransitionTime" not in c:
                new["lastTransitionTime"] = now
            if "lastHeartbeatTime" in c:
                new["lastHeartbeatTime"] = now
            out.append(new)
        else:
            out.append(c)
    if not found:
        out.append({"type": cond_type, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": now, **extra})
    return out
