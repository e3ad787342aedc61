"""OpenAPI v3: the index at /openapi/v3 and one document per group-version.

Upstream: k8s.io/kube-openapi pkg/handler3 (index with per-GV `serverRelativeURL?hash=`),
apiextensions-apiserver pkg/controller/openapi/builder (CRD documents, schema names such as
`io.kubevirt.cdi.v1beta1.DataVolume`). kubectl reads these to decide that the server validates
fields itself (a PATCH operation carrying the kind's GVK and a `fieldValidation` parameter) and for
`kubectl explain`. /openapi/v2 is not served (404), which kubectl tolerates.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from .builtin import OBJECT_META, definitions
from .registry import Registry, ResourceType, Version

Obj = dict[str, Any]

_LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
_STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
_DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def schema_name(rt: ResourceType, version: str) -> str:
    if rt.builtin:
        return str(rt.extra["definition"])
    rev = ".".join(reversed(rt.group.split(".")))
    return f"{rev}.{version}.{rt.kind}"


def _refs(node: Any, acc: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            acc.add(ref.rsplit("/", 1)[-1])
        for k, v in node.items():
            if k != "$ref":
                _refs(v, acc)
    elif isinstance(node, list):
        for v in node:
            _refs(v, acc)


def _closure(names: set[str], schemas: dict[str, Obj]) -> None:
    defs = definitions()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in schemas or name not in defs:
            continue
        schemas[name] = defs[name]
        found: set[str] = set()
        _refs(defs[name], found)
        todo.extend(found - set(schemas))


def _crd_schema(rt: ResourceType, v: Version) -> Obj:
    schema = dict(v.schema or {"type": "object"})
    props = dict(schema.get("properties") or {})
    props["apiVersion"] = props.get("apiVersion") or {
        "type": "string", "description": "APIVersion defines the versioned schema of this representation of an "
        "object. Servers should convert recognized schemas to the latest internal value, and may reject "
        "unrecognized values."}
    props["kind"] = props.get("kind") or {
        "type": "string", "description": "Kind is a string value representing the REST resource this object "
        "represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. "
        "In CamelCase."}
    props["metadata"] = {"allOf": [{"$ref": f"#/components/schemas/{OBJECT_META}"}], "default": {},
                         "description": "Standard object's metadata."}
    schema["properties"] = props
    schema["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind, "version": v.name}]
    return schema


def _params(names: list[str]) -> list[Obj]:
    return [{"name": n, "in": "query", "schema": {"type": "string" if n not in ("watch", "allowWatchBookmarks")
                                                   else "boolean"}, "uniqueItems": True} for n in names]


def _op(rt: ResourceType, v: Version, action: str, op_id: str, params: list[str], ref: str | None,
        body_types: list[str] | None = None) -> Obj:
    op: Obj = {
        "operationId": op_id,
        "tags": [gv_path(rt.group, v.name).replace("/", "_")],
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": v.name, "kind": rt.kind},
        "parameters": _params(params),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{ref}"}}}} if ref else {"description": "OK"}},
    }
    if body_types:
        op["requestBody"] = {"required": True, "content": {t: {"schema": {"type": "object"}} for t in body_types}}
    return op


def group_version_document(registry: Registry, group: str, version: str) -> Obj | None:
    pairs = registry.in_group_version(group, version)
    if not pairs:
        return None
    schemas: dict[str, Obj] = {}
    paths: dict[str, Obj] = {}
    wanted = {OBJECT_META, _LIST_META, _STATUS, _DELETE_OPTIONS}
    prefix = "/" + gv_path(group, version)
    for rt, v in sorted(pairs, key=lambda p: p[0].plural):
        name = schema_name(rt, v.name)
        if rt.builtin:
            wanted.add(name)
        else:
            schemas[name] = _crd_schema(rt, v)
            _refs(schemas[name], wanted)
        list_name = f"{name}List" if not rt.builtin else name + "List"
        schemas[list_name] = {
            "type": "object", "description": f"{rt.kind}List is a list of {rt.kind}",
            "required": ["items"],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
                           "metadata": {"allOf": [{"$ref": f"#/components/schemas/{_LIST_META}"}], "default": {}}},
            "x-kubernetes-group-version-kind": [{"group": rt.group, "kind": rt.list_kind_name, "version": v.name}],
        }
        ns = "/namespaces/{namespace}" if rt.namespaced else ""
        coll = f"{prefix}{ns}/{rt.plural}"
        item = f"{coll}/{{name}}"
        write_params = ["dryRun", "fieldManager", "fieldValidation"]
        k = rt.kind
        if "list" in rt.verbs or "create" in rt.verbs:
            paths[coll] = {}
            if "list" in rt.verbs:
                paths[coll]["get"] = _op(rt, v, "list", f"list{k}", ["labelSelector", "fieldSelector", "limit",
                                                                       "continue", "resourceVersion", "watch",
                                                                       "timeoutSeconds", "allowWatchBookmarks"],
                                         list_name)
            if "create" in rt.verbs:
                paths[coll]["post"] = _op(rt, v, "post", f"create{k}", write_params, name, ["application/json"])
            if "deletecollection" in rt.verbs:
                paths[coll]["delete"] = _op(rt, v, "deletecollection", f"deletecollection{k}",
                                            ["labelSelector", "fieldSelector", "dryRun", "propagationPolicy"], _STATUS)
        if "get" in rt.verbs:
            patch_types = ["application/json-patch+json", "application/merge-patch+json"]
            paths[item] = {
                "get": _op(rt, v, "get", f"read{k}", [], name),
                "put": _op(rt, v, "put", f"replace{k}", write_params, name, ["application/json"]),
                "patch": _op(rt, v, "patch", f"patch{k}", write_params + ["force"], name, patch_types),
                "delete": _op(rt, v, "delete", f"delete{k}", ["dryRun", "propagationPolicy",
                                                                "gracePeriodSeconds"], _STATUS),
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            }
            if rt.namespaced:
                paths[item]["parameters"].append({"name": "namespace", "in": "path", "required": True,
                                                  "schema": {"type": "string"}})
            if "status" in rt.subresources:
                paths[f"{item}/status"] = {
                    "get": _op(rt, v, "get", f"read{k}Status", [], name),
                    "put": _op(rt, v, "put", f"replace{k}Status", write_params, name, ["application/json"]),
                    "patch": _op(rt, v, "patch", f"patch{k}Status", write_params + ["force"], name, patch_types),
                }
    _closure(wanted, schemas)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


class OpenAPICache:
    """Per-GV documents serialized once per registry generation, with a content hash for the index."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self._generation = -1
        self._docs: dict[str, tuple[bytes, str]] = {}

    def _refresh(self) -> None:
        if self._generation != self.registry.generation:
            self._docs = {}
            self._generation = self.registry.generation

    def document(self, group: str, version: str) -> tuple[bytes, str] | None:
        self._refresh()
        key = gv_path(group, version)
        if key not in self._docs:
            doc = group_version_document(self.registry, group, version)
            if doc is None:
                return None
            body = orjson.dumps(doc)
            self._docs[key] = (body, hashlib.sha512(body).hexdigest()[:64].upper())
        return self._docs[key]

    def index(self) -> Obj:
        self._refresh()
        paths: Obj = {}
        for group, versions in self.registry.groups():
            for v in versions:
                entry = self.document(group, v)
                if entry is not None:
                    key = gv_path(group, v)
                    paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={entry[1]}"}
        return {"paths": paths}
