"""The API verbs on objects: get, list, create, update, patch, delete; no HTTP here.

Upstream counterpart: k8s.io/apiserver pkg/registry/generic/registry/store.go with the rest/*
helpers (BeforeCreate, BeforeUpdate, BeforeDelete) and pkg/endpoints/handlers/patch.go. The HTTP
handlers, the garbage collector and bootstrapping all go through this class, so every write gets
the same defaulting, validation, admission and bookkeeping.

Everything here runs on the event loop without awaiting: a read-check-write is atomic because
nothing else runs in between. The store's dicts are immutable by convention; every write builds a
new object.
"""

from __future__ import annotations

import base64
import builtins
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import admission, conversion, errors
from . import crd as crdlib
from .builtin import OBJECT_META, definitions
from .metadata import SERVER_OWNED, generate_name, new_uid, now_rfc3339, validate_meta
from .patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from .registry import Registry, ResourceType, Version
from .schema import Walker, make_resolver
from .selectors import Predicate, exact_name, field_predicate, label_predicate
from .store import Store, StoreConflict, clone

log = logging.getLogger(__name__)

Obj = dict[str, Any]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict | Warn | Ignore
    field_manager: str = ""
    user: str = ""


@dataclass
class WriteResult:
    obj: Obj  # as served in the requested version
    warnings: list[str] = field(default_factory=list)
    created: bool = False


class Objects:
    def __init__(self, store: Store, registry: Registry):
        self.store = store
        self.registry = registry
        self._resolve = make_resolver(definitions())
        self._object_meta = self._resolve({"$ref": OBJECT_META})
        self.on_crd_change: Callable[[], None] | None = None

    # --- lookup for admission and gc ----------------------------------------------------------------------

    def get(self, group: str, plural: str, namespace: str, name: str) -> Obj | None:
        rt = self.registry.get(group, plural)
        if rt is None:
            return None
        return self.store.get(rt.storage_id, namespace if rt.namespaced else "", name)

    def list(self, group: str, plural: str, namespace: str | None = None) -> builtins.list[Obj]:
        rt = self.registry.get(group, plural)
        if rt is None:
            return []
        return self.store.list(rt.storage_id, namespace if rt.namespaced else None)

    # --- reads --------------------------------------------------------------------------------------------

    def read(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.storage_id, namespace if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return obj

    def select(self, rt: ResourceType, namespace: str | None, label_selector: str | None,
               field_selector: str | None, limit: int = 0, cont: str | None = None) -> tuple[builtins.list[Obj], str, str]:
        """Stored objects matching the selectors; returns (items, list resourceVersion, continue token)."""
        lpred = label_predicate(label_selector)
        fpred = field_predicate(field_selector, (rt.group, rt.plural), rt.extra.get("selectable"))
        ns = namespace if rt.namespaced else None
        direct = exact_name(field_selector)
        if direct is not None and ns is not None:
            one = self.store.get(rt.storage_id, ns, direct)
            items = [one] if one is not None else []
        else:
            items = self.store.list(rt.storage_id, ns)
        if lpred or fpred:
            items = [o for o in items if (lpred is None or lpred(o)) and (fpred is None or fpred(o))]
        rv = str(self.store.revision)
        token = ""
        if cont:
            start = _decode_continue(cont)
            items = [o for o in items if _sort_key(o) > start]
        if limit and len(items) > limit:
            items = items[:limit]
            token = _encode_continue(_sort_key(items[-1]), rv)
        return items, rv, token

    def predicate(self, rt: ResourceType, label_selector: str | None, field_selector: str | None) -> Predicate | None:
        lpred = label_predicate(label_selector)
        fpred = field_predicate(field_selector, (rt.group, rt.plural), rt.extra.get("selectable"))
        if lpred and fpred:
            return lambda o: lpred(o) and fpred(o)
        return lpred or fpred

    # --- schema -------------------------------------------------------------------------------------------

    def _schema_for(self, rt: ResourceType, version: Version) -> Obj | None:
        if rt.builtin:
            return {"$ref": rt.extra["definition"]}
        return version.schema

    def _walk(self, rt: ResourceType, version: Version, obj: Obj, mode: str, defaults: bool,
              warnings: builtins.list[str]) -> None:
        """Prune unknown fields (Strict: 400), apply CRD defaults, and check types (422 for CRs)."""
        walker = Walker(self._resolve, prune=True, defaults=defaults and not rt.builtin, validate=True,
                        metadata_schema=self._object_meta)
        result = walker.walk_root(obj, self._schema_for(rt, version))
        if result.unknown:
            if mode == "Strict":
                fields = ", ".join(f'unknown field "{u}"' for u in result.unknown)
                raise errors.bad_request(f'{rt.kind} in version "{version.name}" cannot be handled as a '
                                         f'{rt.kind}: strict decoding error: {fields}')
            if mode == "Warn":
                warnings.extend(f'unknown field "{u}"' for u in result.unknown)
        if result.errors:
            name = (obj.get("metadata") or {}).get("name", "")
            type_errors = [e for e in result.errors if e.type == "FieldValueTypeInvalid"]
            if rt.builtin and type_errors:
                # Built-in kinds are decoded into Go structs: a wrong type is a 400 decoding error there.
                e = type_errors[0]
                go_type = {"boolean": "bool", "integer": "number", "object": "object", "array": "array"}.get(
                    str(e.value), str(e.value))
                expected = e.detail.split("must be of type ")[-1].split(":")[0]
                raise errors.bad_request(f'{rt.kind} in version "{version.name}" cannot be handled as a {rt.kind}: '
                                         f"json: cannot unmarshal {go_type} into Go struct field "
                                         f"{rt.kind}.{e.field} of type {expected}")
            raise errors.invalid(rt.kind, rt.group, name, result.errors)

    # --- create -------------------------------------------------------------------------------------------

    def create(self, rt: ResourceType, version: Version, namespace: str, body: Any, opts: WriteOptions) -> WriteResult:
        warnings: builtins.list[str] = []
        obj = self._check_body(rt, version, body)
        meta = obj["metadata"]
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                         "on the request")
            namespace = namespace or body_ns or ""
            if not namespace:
                raise errors.bad_request("the server could not find the requested resource: namespace is required")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
            namespace = ""
        if version.deprecated:
            warnings.append(version.deprecation_warning or f"{rt.api_version(version.name)} {rt.kind} is deprecated")
        self._walk(rt, version, obj, opts.field_validation, True, warnings)
        for f in SERVER_OWNED:
            meta.pop(f, None)
        generated = False
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(meta["generateName"])
            generated = True
        name = meta.get("name", "")
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now_rfc3339()
        if not rt.builtin or rt.plural == "customresourcedefinitions":
            meta["generation"] = 1
        if rt.has_status() or rt.plural == "customresourcedefinitions":
            obj.pop("status", None)
        obj = conversion.to_storage(rt, obj)
        if rt.namespaced:
            self._check_namespace_open(rt, namespace, name)
        req = admission.Request(admission.CREATE, rt, namespace, name, obj, None, self, dry_run=opts.dry_run,
                                user=opts.user)
        admission.mutate(req)
        errs = validate_meta(obj["metadata"], namespaced=rt.namespaced, label_name=rt.plural == "namespaces")
        errs += admission.validate(req)
        if rt.plural == "customresourcedefinitions" and rt.group == "apiextensions.k8s.io":
            errs += crdlib.validate_crd(obj)
            obj["status"] = crdlib.established_status(obj, meta["creationTimestamp"])
        if errs:
            raise errors.invalid(rt.kind, rt.group, name, errs)
        warnings.extend(req.warnings)
        if opts.dry_run:
            if self.store.get(rt.storage_id, namespace, name) is not None:
                raise errors.already_exists(rt.group, rt.plural, name)
            return WriteResult(conversion.to_served(rt, version.name, obj), warnings, True)
        for attempt in range(8):
            try:
                stored = self.store.create(rt.storage_id, namespace, obj["metadata"]["name"], obj)
                break
            except StoreConflict:
                if generated and attempt < 7:
                    obj["metadata"]["name"] = generate_name(meta["generateName"])
                    continue
                raise errors.already_exists(rt.group, rt.plural, obj["metadata"]["name"]) from None
        self._after_write(rt, stored)
        return WriteResult(conversion.to_served(rt, version.name, stored), warnings, True)

    def _check_body(self, rt: ResourceType, version: Version, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request(f"Object 'Kind' is missing in '{_short(body)}'")
        obj = clone(body)
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        expected_av = rt.api_version(version.name)
        if api_version and api_version != expected_av:
            raise errors.bad_request(f"the API version in the data ({api_version}) does not match the expected API "
                                     f"version ({expected_av})")
        if kind and kind != rt.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        obj["apiVersion"] = expected_av
        obj["kind"] = rt.kind
        meta = obj.get("metadata")
        if meta is None:
            obj["metadata"] = meta = {}
        if not isinstance(meta, dict):
            raise errors.bad_request(f"{rt.kind} in version \"{version.name}\" cannot be handled as a {rt.kind}: "
                                     "json: cannot unmarshal into Go struct field .metadata of type v1.ObjectMeta")
        return obj

    def _check_namespace_open(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self.store.get(("", "namespaces"), "", namespace)
        if ns is None:
            raise errors.not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp") and rt.plural != "events":
            raise errors.forbidden(rt.group, rt.plural, name, f"unable to create new content in namespace "
                                   f"{namespace} because it is being terminated")

    # --- update / patch -----------------------------------------------------------------------------------

    def update(self, rt: ResourceType, version: Version, namespace: str, name: str, body: Any, opts: WriteOptions,
               subresource: str | None = None, *, rv_required: bool | None = None) -> WriteResult:
        ns = namespace if rt.namespaced else ""
        old = self.store.get(rt.storage_id, ns, name)
        if old is None:
            raise errors.not_found(rt.group, rt.plural, name)
        warnings: builtins.list[str] = []
        obj = self._check_body(rt, version, body)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                     f"({name})")
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the "
                                     "request")
        rv = meta.get("resourceVersion")
        if rv:
            if str(rv) != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.group, rt.plural, name)
        elif rv_required if rv_required is not None else not rt.builtin:
            raise errors.invalid(rt.kind, rt.group, name, [errors.invalid_value(
                "metadata.resourceVersion", "0x0", "must be specified for an update")])
        self._walk(rt, version, obj, opts.field_validation, True, warnings)
        old_served = conversion.to_served(rt, version.name, old)
        if subresource == "finalize":
            new = clone(old_served)
            new.setdefault("spec", {})["finalizers"] = (obj.get("spec") or {}).get("finalizers") or []
            obj = new
        elif subresource == "status":
            new = clone(old_served)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            obj = new
        else:
            if rt.has_status() or rt.plural == "customresourcedefinitions":
                if "status" in old_served:
                    obj["status"] = clone(old_served["status"])
                else:
                    obj.pop("status", None)
        meta = obj["metadata"]
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if f in old["metadata"]:
                meta[f] = old["metadata"][f]
            else:
                meta.pop(f, None)
        meta["name"] = name
        if rt.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        errs: builtins.list[errors.FieldError] = []
        if old["metadata"].get("deletionTimestamp"):
            added = [f for f in meta.get("finalizers") or [] if f not in (old["metadata"].get("finalizers") or [])]
            if added:
                errs.append(errors.forbidden_field("metadata.finalizers", "no new finalizers can be added if the "
                                                   "object is being deleted, found new finalizers " +
                                                   "[]string{" + ", ".join(f'"{f}"' for f in added) + "}"))
        if "generation" in meta and _spec_part(obj) != _spec_part(old_served):
            meta["generation"] = int(meta["generation"]) + 1
        obj = conversion.to_storage(rt, obj)
        req = admission.Request(admission.UPDATE, rt, ns, name, obj, old, self, subresource=subresource,
                                dry_run=opts.dry_run, user=opts.user)
        admission.mutate(req)
        errs += validate_meta(obj["metadata"], namespaced=rt.namespaced, label_name=rt.plural == "namespaces")
        errs += admission.validate(req)
        if rt.plural == "customresourcedefinitions" and rt.group == "apiextensions.k8s.io":
            errs += crdlib.validate_crd(obj)
            if subresource != "status":
                obj["status"] = crdlib.established_status(obj, now_rfc3339())
        if errs:
            raise errors.invalid(rt.kind, rt.group, name, errs)
        warnings.extend(req.warnings)
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if obj == old:
            return WriteResult(conversion.to_served(rt, version.name, old), warnings)
        if opts.dry_run:
            return WriteResult(conversion.to_served(rt, version.name, obj), warnings)
        try:
            stored = self.store.update(rt.storage_id, ns, name, obj, int(old["metadata"]["resourceVersion"]))
        except StoreConflict:
            raise errors.conflict(rt.group, rt.plural, name) from None
        if self._deletion_complete(rt, stored):
            stored = self.store.delete(rt.storage_id, ns, name)
        self._after_write(rt, stored)
        return WriteResult(conversion.to_served(rt, version.name, stored), warnings)

    def patch(self, rt: ResourceType, version: Version, namespace: str, name: str, content_type: str, body: Any,
              opts: WriteOptions, subresource: str | None = None) -> WriteResult:
        ns = namespace if rt.namespaced else ""
        old = self.store.get(rt.storage_id, ns, name)
        if old is None:
            raise errors.not_found(rt.group, rt.plural, name)
        current = clone(conversion.to_served(rt, version.name, old))
        if content_type == MERGE_PATCH:
            if not isinstance(body, dict):
                raise errors.bad_request("json: cannot unmarshal into a merge patch: the patch must be a JSON object")
            patched = merge_patch(current, body)
        elif content_type == JSON_PATCH:
            patched = json_patch(current, body)
        elif content_type == STRATEGIC_PATCH and rt.builtin:
            patched = strategic_merge_patch(current, body, {"$ref": rt.extra["definition"]}, self._resolve)
        elif content_type in (STRATEGIC_PATCH, APPLY_PATCH):
            raise errors.unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
        else:
            raise errors.unsupported_media_type(f"the body of the request was in an unknown format - accepted media "
                                                f"types include: {JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}")
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not result in an object")
        if not isinstance(patched.get("metadata"), dict):
            patched["metadata"] = {}
        new_rv = patched["metadata"].get("resourceVersion")
        if new_rv and str(new_rv) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, name)
        patched["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self.update(rt, version, namespace, name, patched, opts, subresource, rv_required=False)

    # --- delete -------------------------------------------------------------------------------------------

    def delete(self, rt: ResourceType, version: Version, namespace: str, name: str, options: Obj | None,
               dry_run: bool = False) -> WriteResult:
        ns = namespace if rt.namespaced else ""
        old = self.store.get(rt.storage_id, ns, name)
        if old is None:
            raise errors.not_found(rt.group, rt.plural, name)
        options = options or {}
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old["metadata"].get("uid"):
            raise errors.conflict(rt.group, rt.plural, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                  f"UID in object meta: {old['metadata'].get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, name, "Precondition failed: ResourceVersion in precondition: "
                                  f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                  f"{old['metadata']['resourceVersion']}")
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.invalid("DeleteOptions", "", "", [errors.not_supported(
                "propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"])])
        req = admission.Request(admission.DELETE, rt, ns, name, None, old, self, dry_run=dry_run)
        errs = admission.validate(req)
        if errs:
            raise errors.invalid(rt.kind, rt.group, name, errs)
        finalizers = list(old["metadata"].get("finalizers") or [])
        if policy == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
            finalizers = [f for f in finalizers if f != ORPHAN]
        elif policy == "Orphan" and ORPHAN not in finalizers:
            finalizers.append(ORPHAN)
            finalizers = [f for f in finalizers if f != FOREGROUND]
        elif policy == "Background":
            finalizers = [f for f in finalizers if f not in (FOREGROUND, ORPHAN)] if \
                old["metadata"].get("deletionTimestamp") else finalizers
        graceful = rt.plural == "namespaces" and rt.group == "" or \
            (rt.plural == "customresourcedefinitions" and rt.group == "apiextensions.k8s.io")
        grace = self._pod_grace(rt, old, options)
        if grace is not None:
            graceful = True
        if not finalizers and not graceful:
            if dry_run:
                return WriteResult(conversion.to_served(rt, version.name, old))
            final = self.store.delete(rt.storage_id, ns, name)
            self._after_write(rt, final)
            return WriteResult(conversion.to_served(rt, version.name, final))
        new = clone(old)
        meta = new["metadata"]
        if rt.plural == "customresourcedefinitions" and CRD_CLEANUP not in finalizers:
            finalizers.append(CRD_CLEANUP)
        meta["finalizers"] = finalizers
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = now_rfc3339()
            meta["deletionGracePeriodSeconds"] = grace or 0
            if "generation" in meta:
                meta["generation"] = int(meta["generation"]) + 1
        if rt.plural == "namespaces" and rt.group == "":
            new.setdefault("status", {})["phase"] = "Terminating"
        if new == old:
            return WriteResult(conversion.to_served(rt, version.name, old))
        if dry_run:
            return WriteResult(conversion.to_served(rt, version.name, new))
        stored = self.store.update(rt.storage_id, ns, name, new)
        if self._deletion_complete(rt, stored):
            stored = self.store.delete(rt.storage_id, ns, name)
        self._after_write(rt, stored)
        return WriteResult(conversion.to_served(rt, version.name, stored))

    @staticmethod
    def _pod_grace(rt: ResourceType, pod: Obj, options: Obj) -> int | None:
        """Graceful deletion (pkg/registry/core/pod/strategy.go CheckGracefulDelete): a pod on a node that
        has not finished is marked for deletion, and its node stops it and then deletes it with grace 0."""
        if rt.group != "" or rt.plural != "pods":
            return None
        if not (pod.get("spec") or {}).get("nodeName"):
            return None
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        grace = int(grace)
        if grace <= 0:
            return None
        return grace

    def _deletion_complete(self, rt: ResourceType, obj: Obj) -> bool:
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return False
        if rt.plural == "namespaces" and rt.group == "" and (obj.get("spec") or {}).get("finalizers"):
            return False
        return True

    # --- internal writes for controllers inside the server (gc, namespace lifecycle) ----------------------

    def write_stored(self, rt: ResourceType, obj: Obj) -> Obj:
        """Replace a stored object as the server itself (no admission); completes pending deletions."""
        ns = obj["metadata"].get("namespace", "") if rt.namespaced else ""
        name = obj["metadata"]["name"]
        stored = self.store.update(rt.storage_id, ns, name, obj, int(obj["metadata"]["resourceVersion"]))
        if self._deletion_complete(rt, stored):
            stored = self.store.delete(rt.storage_id, ns, name)
        self._after_write(rt, stored)
        return stored

    def _after_write(self, rt: ResourceType, obj: Obj) -> None:
        if rt.group == "apiextensions.k8s.io" and rt.plural == "customresourcedefinitions":
            self.sync_crd(obj)

    def sync_crd(self, crd: Obj) -> None:
        """Serve (or stop serving) the kind a CRD defines."""
        spec = crd.get("spec") or {}
        group, plural = spec.get("group"), (spec.get("names") or {}).get("plural")
        if not group or not plural:
            return
        if self.store.get(("apiextensions.k8s.io", "customresourcedefinitions"), "", crd["metadata"]["name"]) is None:
            self.registry.remove(group, plural)
        else:
            existing = self.registry.get(group, plural)
            if existing is not None and existing.builtin:
                return
            self.registry.add(crdlib.resource_type_from_crd(crd))
        if self.on_crd_change:
            self.on_crd_change()


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _sort_key(o: Obj) -> str:
    m = o.get("metadata") or {}
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def _encode_continue(start: str, rv: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"v": "meta.k8s.io/v1", "rv": int(rv), "start": start})).decode()


def _decode_continue(token: str) -> str:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode() + b"=="))
        return str(data["start"])
    except Exception:
        raise errors.bad_request("continue key is not valid: illegal base64 data") from None


def _short(body: Any) -> str:
    text = orjson.dumps(body).decode() if not isinstance(body, (bytes, str)) else str(body)
    return text[:100]
