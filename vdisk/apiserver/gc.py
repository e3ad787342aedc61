"""Garbage collection by ownerReferences, namespace lifecycle, and CRD instance cleanup.

Upstream counterparts: k8s pkg/controller/garbagecollector (attemptToDeleteItem, orphaning,
foreground deletion), pkg/controller/namespace/deletion (namespaced_resources_deleter.go) and
apiextensions-apiserver pkg/controller/finalizer (customresourcecleanup). They run inside the API
server here, on the store's change feed, and write through `Objects` like any client would.

- Background: once every owner of an object is gone, the object is deleted.
- Foreground: an owner with the `foregroundDeletion` finalizer has its dependents deleted (in
  foreground too), and loses the finalizer when none are left.
- Orphan: an owner with the `orphan` finalizer has its ownerReferences removed from every dependent,
  then loses the finalizer.
- A Terminating namespace has everything in it deleted, then its `kubernetes` finalizer removed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import errors
from .service import CRD_CLEANUP, FOREGROUND, ORPHAN, Objects
from .store import DELETED, Event, ResourceId, clone

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Ref = tuple[ResourceId, str, str]  # (resource, namespace, name)


class GarbageCollector:
    def __init__(self, objects: Objects):
        self.objects = objects
        self.store = objects.store
        self._by_uid: dict[str, Ref] = {}
        self._dependents: dict[str, set[Ref]] = {}
        self._owners_of: dict[Ref, set[str]] = {}
        self._pending: dict[tuple[str, Any], None] = {}
        self._wake = asyncio.Event()
        for rid, ns, obj in self.store.iter_all():
            self._index(rid, ns, obj)
        self.store.subscribe(self._on_event)
        # Objects whose owners vanished while the server was down, and deletions in progress.
        for rid, ns, obj in list(self.store.iter_all()):
            self._classify(rid, ns, obj)

    # --- indexes ------------------------------------------------------------------------------------------

    def _index(self, rid: ResourceId, ns: str, obj: Obj) -> None:
        meta = obj["metadata"]
        ref = (rid, ns, meta["name"])
        self._by_uid[meta["uid"]] = ref
        self._unindex_owners(ref)
        owners = {r["uid"] for r in meta.get("ownerReferences") or [] if isinstance(r, dict) and r.get("uid")}
        if owners:
            self._owners_of[ref] = owners
            for uid in owners:
                self._dependents.setdefault(uid, set()).add(ref)

    def _unindex_owners(self, ref: Ref) -> None:
        for uid in self._owners_of.pop(ref, ()):
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(ref)
                if not deps:
                    del self._dependents[uid]

    def _on_event(self, ev: Event) -> None:
        ref = (ev.rid, ev.namespace, ev.name)
        if ev.type == DELETED:
            uid = ev.obj["metadata"].get("uid")
            if self._by_uid.get(uid) == ref:
                del self._by_uid[uid]
            self._unindex_owners(ref)
            for dep in list(self._dependents.get(uid, ())):
                self._enqueue("dependent", dep)
            for owner_uid in {r.get("uid") for r in ev.obj["metadata"].get("ownerReferences") or []}:
                owner = self._by_uid.get(owner_uid)
                if owner is not None:
                    self._enqueue("owner", owner)
            if ev.namespace:
                nsobj = self.store.get(("", "namespaces"), "", ev.namespace)
                if nsobj is not None and nsobj["metadata"].get("deletionTimestamp"):
                    self._enqueue("namespace", ev.namespace)
            self._enqueue("crd-of", ev.rid)
            return
        self._index(ev.rid, ev.namespace, ev.obj)
        self._classify(ev.rid, ev.namespace, ev.obj)

    def _classify(self, rid: ResourceId, ns: str, obj: Obj) -> None:
        meta = obj["metadata"]
        ref = (rid, ns, meta["name"])
        if meta.get("deletionTimestamp"):
            fins = meta.get("finalizers") or []
            if FOREGROUND in fins or ORPHAN in fins:
                self._enqueue("owner", ref)
            if rid == ("", "namespaces"):
                self._enqueue("namespace", meta["name"])
            if rid == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._enqueue("crd", meta["name"])
        elif meta.get("ownerReferences"):
            self._enqueue("dependent", ref)

    def _enqueue(self, kind: str, item: Any) -> None:
        self._pending[(kind, item)] = None
        self._wake.set()

    # --- the loop -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                (kind, item) = next(iter(self._pending))
                del self._pending[(kind, item)]
                try:
                    getattr(self, f"_handle_{kind.replace('-', '_')}")(item)
                except errors.APIError as exc:
                    log.info("gc could not process kind=%s item=%s reason=%s", kind, item, exc.message)
                except Exception:
                    log.exception("gc failed kind=%s item=%s", kind, item)
                await asyncio.sleep(0)  # let requests in between deletions of a big namespace

    def drain(self) -> None:
        """Process everything pending now (tests and shutdown)."""
        while self._pending:
            (kind, item) = next(iter(self._pending))
            del self._pending[(kind, item)]
            getattr(self, f"_handle_{kind.replace('-', '_')}")(item)

    # --- handlers -----------------------------------------------------------------------------------------

    def _rt(self, rid: ResourceId) -> Any:
        for rt in self.objects.registry:
            if rt.storage_id == rid and (rt.group, rt.plural) == rid:
                return rt
        return None

    def _delete(self, ref: Ref, policy: str) -> None:
        rt = self._rt(ref[0])
        if rt is None:
            return
        version = rt.version(rt.storage_version) or rt.versions[0]
        try:
            self.objects.delete(rt, version, ref[1], ref[2], {"propagationPolicy": policy})
        except errors.APIError as exc:
            if exc.code != 404:
                raise

    def _handle_dependent(self, ref: Ref) -> None:
        obj = self.store.get(*ref)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        refs = [r for r in obj["metadata"].get("ownerReferences") or [] if isinstance(r, dict)]
        if not refs:
            return
        solid, dangling, waiting = [], [], []
        for r in refs:
            owner_ref = self._by_uid.get(r.get("uid", ""))
            owner = self.store.get(*owner_ref) if owner_ref else None
            if owner is None:
                dangling.append(r)
            elif owner["metadata"].get("deletionTimestamp") and FOREGROUND in (owner["metadata"].get("finalizers")
                                                                                or []):
                waiting.append(r)
            else:
                solid.append(r)
        if solid:
            if dangling or waiting:
                gone = {r["uid"] for r in dangling + waiting}
                new = clone(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") not in gone]
                rt = self._rt(ref[0])
                if rt is not None:
                    self.objects.write_stored(rt, new)
            return
        fins = obj["metadata"].get("finalizers") or []
        if waiting:
            policy = "Foreground"
        elif ORPHAN in fins:
            policy = "Orphan"
        elif FOREGROUND in fins:
            policy = "Foreground"
        else:
            policy = "Background"
        log.info("gc deleting dependent=%s/%s/%s policy=%s", ref[0][1], ref[1], ref[2], policy)
        self._delete(ref, policy)

    def _handle_owner(self, ref: Ref) -> None:
        obj = self.store.get(*ref)
        if obj is None or not obj["metadata"].get("deletionTimestamp"):
            return
        uid = obj["metadata"]["uid"]
        fins = list(obj["metadata"].get("finalizers") or [])
        rt = self._rt(ref[0])
        if rt is None:
            return
        if ORPHAN in fins:
            for dep in list(self._dependents.get(uid, ())):
                d = self.store.get(*dep)
                if d is None:
                    continue
                new = clone(d)
                new["metadata"]["ownerReferences"] = [r for r in d["metadata"].get("ownerReferences") or []
                                                      if r.get("uid") != uid]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                drt = self._rt(dep[0])
                if drt is not None:
                    self.objects.write_stored(drt, new)
            self._remove_finalizer(rt, ref, ORPHAN)
        elif FOREGROUND in fins:
            deps = [d for d in self._dependents.get(uid, ()) if self.store.get(*d) is not None]
            if not deps:
                self._remove_finalizer(rt, ref, FOREGROUND)
                return
            for dep in deps:
                self._handle_dependent(dep)

    def _remove_finalizer(self, rt: Any, ref: Ref, finalizer: str) -> None:
        obj = self.store.get(*ref)
        if obj is None or finalizer not in (obj["metadata"].get("finalizers") or []):
            return
        new = clone(obj)
        new["metadata"]["finalizers"] = [f for f in obj["metadata"]["finalizers"] if f != finalizer]
        self.objects.write_stored(rt, new)

    def _handle_namespace(self, name: str) -> None:
        ns = self.store.get(("", "namespaces"), "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for rt in list(self.objects.registry.namespaced()):
            for obj in list(self.store.list(rt.storage_id, name)):
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete((rt.storage_id, name, obj["metadata"]["name"]), "Background")
        if remaining:
            left = sum(self.store.count(rt.storage_id, name) for rt in self.objects.registry.namespaced())
            if left:
                self._set_namespace_condition(ns, left)
                return
        ns = self.store.get(("", "namespaces"), "", name)
        if ns is None:
            return
        if "kubernetes" in ((ns.get("spec") or {}).get("finalizers") or []):
            new = clone(ns)
            new["spec"]["finalizers"] = [f for f in new["spec"]["finalizers"] if f != "kubernetes"]
            rt = self._rt(("", "namespaces"))
            self.objects.write_stored(rt, new)
            log.info("namespace deleted name=%s", name)

    def _set_namespace_condition(self, ns: Obj, left: int) -> None:
        message = f"Some resources are remaining: {left} objects are waiting for their finalizers or deletion"
        conds = (ns.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "NamespaceContentRemaining" and c.get("message") == message for c in conds):
            return
        from .metadata import now_rfc3339

        new = clone(ns)
        status = new.setdefault("status", {})
        status["conditions"] = [c for c in conds if c.get("type") != "NamespaceContentRemaining"] + [{
            "type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
            "message": message, "lastTransitionTime": now_rfc3339()}]
        rt = self._rt(("", "namespaces"))
        self.objects.write_stored(rt, new)

    def _handle_crd(self, name: str) -> None:
        crd = self.store.get(("apiextensions.k8s.io", "customresourcedefinitions"), "", name)
        if crd is None or not crd["metadata"].get("deletionTimestamp"):
            return
        spec = crd["spec"]
        rid = (spec["group"], spec["names"]["plural"])
        items = self.store.list(rid)
        for obj in items:
            if not obj["metadata"].get("deletionTimestamp"):
                self._delete((rid, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]), "Background")
        if self.store.count(rid) == 0:
            rt = self._rt(("apiextensions.k8s.io", "customresourcedefinitions"))
            self._remove_finalizer(rt, (("apiextensions.k8s.io", "customresourcedefinitions"), "", name),
                                   CRD_CLEANUP)

    def _handle_crd_of(self, rid: ResourceId) -> None:
        for crd in self.store.list(("apiextensions.k8s.io", "customresourcedefinitions")):
            spec = crd.get("spec") or {}
            if (spec.get("group"), (spec.get("names") or {}).get("plural")) == rid:
                if crd["metadata"].get("deletionTimestamp"):
                    self._handle_crd(crd["metadata"]["name"])
                return
