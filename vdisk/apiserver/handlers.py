"""HTTP handlers: discovery, OpenAPI, and the REST verbs on every kind, including watch and Tables.

Upstream: k8s.io/apiserver pkg/endpoints/handlers (get.go, create.go, update.go, patch.go, delete.go,
watch.go, response.go). This layer parses the request, calls `Objects`, and renders the answer in
the negotiated form (object, List, Table, PartialObjectMetadata, watch stream); errors become
`Status` bodies in the middleware.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from aiohttp import web

from . import conversion, discovery, errors, printers, protobuf
from .patch import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH
from .registry import ResourceType, Version
from .requestinfo import RequestInfo, parse_resource_path
from .service import WriteOptions
from .store import Event
from .watch import BOOKMARK

if TYPE_CHECKING:
    from .server import APIServer

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's MaxRequestBodyBytes

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  content_type: str = "application/json", warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=body if isinstance(body, bytes) else orjson.dumps(body), status=status,
                        headers=headers)
    resp.content_type = "application/json"
    if content_type != "application/json":
        resp.headers["Content-Type"] = content_type
    for w in warnings or ():
        resp.headers.add("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return resp


def parse_bool(request: web.Request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None or v == "":
        return default
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise errors.bad_request(f'invalid value "{v}" for query parameter {name}: must be a boolean')


def parse_int(request: web.Request, name: str) -> int | None:
    v = request.query.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise errors.bad_request(f'invalid value "{v}" for query parameter {name}: must be an integer') from None


def write_options(request: web.Request, user: str) -> WriteOptions:
    dry = request.query.getall("dryRun", [])
    for d in dry:
        if d != "All":
            raise errors.invalid("DryRun", "", "", [errors.not_supported("dryRun", d, ["All"])])
    fv = request.query.get("fieldValidation") or "Warn"
    if fv not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(f"fieldValidation must be one of Ignore, Warn, or Strict, got: {fv}")
    return WriteOptions(dry_run=bool(dry), field_validation=fv, field_manager=request.query.get("fieldManager", ""),
                        user=user)


async def read_body(request: web.Request) -> bytes:
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise errors.too_large(MAX_BODY)
    data = await request.content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise errors.too_large(MAX_BODY)
    return data


def decode_body(data: bytes, content_type: str) -> Any:
    if not data.strip():
        raise errors.bad_request("the request body is empty")
    if content_type == protobuf.PROTOBUF:
        return protobuf.decode(data)
    try:
        if "yaml" in content_type and "apply-patch" not in content_type:
            return yaml.safe_load(data)
        return orjson.loads(data)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        if "json" in content_type or not content_type:
            try:
                return yaml.safe_load(data)  # kubectl only sends JSON; humans with curl send YAML too
            except yaml.YAMLError:
                pass
        raise errors.bad_request(f"the request body could not be decoded: {str(exc).splitlines()[0]}") from None


# --- content negotiation ------------------------------------------------------------------------------------

def _accept_as(request: web.Request) -> tuple[str | None, str]:
    """("Table" | "PartialObjectMetadata" | "PartialObjectMetadataList" | None, meta.k8s.io version)."""
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        params = {}
        for p in part.split(";")[1:]:
            if "=" in p:
                k, v = p.strip().split("=", 1)
                params[k] = v
        if params.get("g") == "meta.k8s.io" and params.get("as") in ("Table", "PartialObjectMetadata",
                                                                     "PartialObjectMetadataList"):
            if params.get("v") in ("v1", "v1beta1"):
                return params["as"], params["v"]
    return None, "v1"


def _include_object(request: web.Request) -> str:
    v = request.query.get("includeObject", "") or "Metadata"
    if v not in ("None", "Metadata", "Object"):
        raise errors.bad_request(f'unrecognized includeObject value: "{v}"')
    return v


def _partial(meta_version: str, obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{meta_version}",
            "metadata": obj.get("metadata") or {}}


def build_table(rt: ResourceType, version: Version, objs: list[Obj], include: str, meta_version: str,
                list_meta: Obj, with_columns: bool = True) -> Obj:
    columns, cells = printers.printer_for(rt, version)
    now = printers.now_utc()
    rows = []
    for obj in objs:
        row: Obj = {"cells": cells(obj, now)}
        conds = printers.row_conditions(rt, obj)
        if conds:
            row["conditions"] = conds
        if include == "Object":
            row["object"] = conversion.to_served(rt, version.name, obj)
        elif include == "Metadata":
            row["object"] = _partial(meta_version, obj)
        rows.append(row)
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{meta_version}", "metadata": list_meta,
            "columnDefinitions": columns if with_columns else None, "rows": rows}


# --- entry point --------------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def dispatch(request: web.Request) -> web.StreamResponse:
    srv: APIServer = request.app["vdisk.apiserver"]
    path = request.path
    if len(path) > 1 and path.endswith("/") and path != "/version/":
        path = path.rstrip("/")
    if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
        return web.Response(text="ok", content_type="text/plain")
    if path in ("/version", "/version/"):
        return json_response(srv.version_info())
    for prefix, handler in srv.extra_routes:
        if path.startswith(prefix):
            return await handler(request)
    method = request.method
    info = parse_resource_path(path)
    if info is None:
        if method != "GET":
            raise errors.method_not_allowed()
        return await _discovery(srv, request, path)
    return await _resource(srv, request, info)


async def _discovery(srv: APIServer, request: web.Request, path: str) -> web.StreamResponse:
    accept = request.headers.get("Accept", "")
    if path == "/api" or path == "/apis":
        ct = discovery.wants_aggregated(accept)
        if ct:
            return json_response(discovery.aggregated(srv.registry, path == "/api", ct), content_type=ct)
        if path == "/api":
            return json_response(discovery.api_versions(srv.address))
        return json_response(discovery.api_group_list(srv.registry))
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] == "api":
        doc = discovery.api_resource_list(srv.registry, "", parts[1])
        if doc:
            return json_response(doc)
    if len(parts) == 2 and parts[0] == "apis":
        doc = discovery.api_group(srv.registry, parts[1])
        if doc:
            return json_response(doc)
    if len(parts) == 3 and parts[0] == "apis":
        doc = discovery.api_resource_list(srv.registry, parts[1], parts[2])
        if doc:
            return json_response(doc)
    if path == "/openapi/v3":
        return json_response(srv.openapi.index())
    if path.startswith("/openapi/v3/"):
        rest = path[len("/openapi/v3/"):].split("/")
        entry = None
        if len(rest) == 2 and rest[0] == "api":
            entry = srv.openapi.document("", rest[1])
        elif len(rest) == 3 and rest[0] == "apis":
            entry = srv.openapi.document(rest[1], rest[2])
        if entry:
            body, digest = entry
            headers = {"ETag": f'"{digest}"'}
            if request.query.get("hash") == digest:
                headers["Cache-Control"] = "public, immutable"
            if request.headers.get("If-None-Match") == f'"{digest}"':
                return web.Response(status=304, headers=headers)
            return json_response(body, headers=headers)
    if path == "/":
        return json_response({"paths": sorted({"/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz",
                                               "/version", "/openapi/v3"})})
    raise errors.resource_not_found()


async def _resource(srv: APIServer, request: web.Request, info: RequestInfo) -> web.StreamResponse:
    found = srv.registry.lookup(info.group, info.version, info.resource)
    if found is None:
        raise errors.resource_not_found()
    rt, version = found
    if info.namespace is not None and not rt.namespaced:
        raise errors.resource_not_found()
    if info.subresource and info.subresource not in rt.subresources:
        raise errors.resource_not_found()
    ns = info.namespace or ""
    method = request.method
    user = request["vdisk.user"]
    verb = _verb(method, info, request)
    if verb not in rt.verbs and not (info.subresource and verb in ("get", "update", "patch")):
        raise errors.method_not_allowed("the server does not allow this method on the requested resource")
    srv.authorize(user, verb, rt, info)
    if rt.namespaced and not info.namespace and verb in ("get", "update", "patch", "delete", "create"):
        if verb != "create":
            raise errors.resource_not_found()
    if method == "GET":
        if info.name:
            if info.subresource == "log":
                return await srv.pod_log(request, rt, ns, info.name)
            return _get(srv, request, rt, version, ns, info.name)
        if parse_bool(request, "watch"):
            return await _watch(srv, request, rt, version, info.namespace)
        return _list(srv, request, rt, version, info.namespace)
    if method == "POST":
        if info.name:
            raise errors.method_not_allowed()
        body = decode_body(await read_body(request), request.content_type)
        hook = srv.create_hooks.get((rt.group, rt.plural))
        if hook is not None:
            return await hook(request, rt, version, ns, body)
        res = srv.objects.create(rt, version, ns, body, write_options(request, user.name))
        return json_response(res.obj, 201, warnings=res.warnings)
    if method == "PUT":
        if not info.name:
            raise errors.method_not_allowed()
        body = decode_body(await read_body(request), request.content_type)
        res = srv.objects.update(rt, version, ns, info.name, body, write_options(request, user.name),
                                 info.subresource or None)
        return json_response(res.obj, 200, warnings=res.warnings)
    if method == "PATCH":
        if not info.name:
            raise errors.method_not_allowed()
        ct = request.content_type
        if ct not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH, APPLY_PATCH):
            raise errors.unsupported_media_type(f"the body of the request was in an unknown format - accepted media "
                                                f"types include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}")
        data = await read_body(request)
        patch_body: Any = None
        if ct != APPLY_PATCH:
            try:
                patch_body = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise errors.bad_request(f"error decoding patch: {exc}") from None
        res = srv.objects.patch(rt, version, ns, info.name, ct, patch_body, write_options(request, user.name),
                                info.subresource or None)
        return json_response(res.obj, 200, warnings=res.warnings)
    if method == "DELETE":
        data = await read_body(request)
        options: Obj = {}
        if data.strip():
            options = decode_body(data, "application/json") or {}
            if not isinstance(options, dict):
                raise errors.bad_request("DeleteOptions must be an object")
        for q in ("propagationPolicy",):
            if request.query.get(q):
                options[q] = request.query[q]
        if request.query.get("gracePeriodSeconds"):
            options["gracePeriodSeconds"] = parse_int(request, "gracePeriodSeconds")
        if request.query.get("orphanDependents"):
            options["orphanDependents"] = parse_bool(request, "orphanDependents")
        dry = bool(request.query.getall("dryRun", [])) or bool(options.get("dryRun"))
        if info.name:
            res = srv.objects.delete(rt, version, ns, info.name, options, dry)
            return json_response(res.obj, 200)
        items, _, _ = srv.objects.select(rt, info.namespace, request.query.get("labelSelector"),
                                         request.query.get("fieldSelector"))
        deleted = []
        for obj in items:
            try:
                deleted.append(srv.objects.delete(rt, version, obj["metadata"].get("namespace", ""),
                                                  obj["metadata"]["name"], options, dry).obj)
            except errors.APIError as exc:
                if exc.code != 404:
                    raise
        return json_response({"kind": rt.list_kind_name, "apiVersion": rt.api_version(version.name),
                              "metadata": {"resourceVersion": str(srv.store.revision)}, "items": deleted})
    raise errors.method_not_allowed()


def _verb(method: str, info: RequestInfo, request: web.Request) -> str:
    if method == "GET":
        if info.name:
            return "get"
        return "watch" if request.query.get("watch") in _TRUE else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if info.name else "deletecollection"}.get(method, method.lower())


def _get(srv: APIServer, request: web.Request, rt: ResourceType, version: Version, ns: str,
         name: str) -> web.Response:
    obj = srv.objects.read(rt, ns, name)
    as_, meta_v = _accept_as(request)
    if as_ == "Table":
        table = build_table(rt, version, [obj], _include_object(request), meta_v,
                            {"resourceVersion": obj["metadata"].get("resourceVersion", "")})
        return json_response(table)
    if as_ == "PartialObjectMetadata":
        return json_response(_partial(meta_v, obj))
    return json_response(conversion.to_served(rt, version.name, obj))


def _list(srv: APIServer, request: web.Request, rt: ResourceType, version: Version,
          namespace: str | None) -> web.Response:
    limit = parse_int(request, "limit") or 0
    items, rv, token = srv.objects.select(rt, namespace, request.query.get("labelSelector"),
                                          request.query.get("fieldSelector"), limit, request.query.get("continue"))
    list_meta: Obj = {"resourceVersion": rv}
    if token:
        list_meta["continue"] = token
    as_, meta_v = _accept_as(request)
    if as_ == "Table":
        return json_response(build_table(rt, version, items, _include_object(request), meta_v, list_meta))
    if as_ in ("PartialObjectMetadataList", "PartialObjectMetadata"):
        return json_response({"kind": "PartialObjectMetadataList", "apiVersion": f"meta.k8s.io/{meta_v}",
                              "metadata": list_meta, "items": [_partial(meta_v, o) for o in items]})
    served = [conversion.to_served(rt, version.name, o) for o in items]
    return json_response({"kind": rt.list_kind_name, "apiVersion": rt.api_version(version.name),
                          "metadata": list_meta, "items": served})


async def _watch(srv: APIServer, request: web.Request, rt: ResourceType, version: Version,
                 namespace: str | None) -> web.StreamResponse:
    predicate = srv.objects.predicate(rt, request.query.get("labelSelector"), request.query.get("fieldSelector"))
    timeout = parse_int(request, "timeoutSeconds")
    if timeout is None or timeout <= 0:
        timeout = random.randint(1800, 3600)  # kube-apiserver: minRequestTimeout..2x
    bookmarks = parse_bool(request, "allowWatchBookmarks")
    send_initial = parse_bool(request, "sendInitialEvents") if request.query.get("sendInitialEvents") else None
    as_, meta_v = _accept_as(request)
    table = as_ == "Table"
    include = _include_object(request) if table else "Object"
    expired: errors.APIError | None = None
    try:
        watcher, initial = srv.hub.start(rt.storage_id, namespace if rt.namespaced else None, predicate,
                                         request.query.get("resourceVersion"), send_initial)
    except errors.APIError as exc:
        if exc.code != 410:
            raise
        expired, watcher, initial = exc, None, []
    watcher_bookmarks = bookmarks
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                   "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    first = [True]
    api_version = rt.api_version(version.name)

    def encode(typ: str, obj: Obj, ev: Event | None = None) -> bytes:
        if table:
            tbl = build_table(rt, version, [obj], include, meta_v,
                              {"resourceVersion": obj["metadata"].get("resourceVersion", "")}, first[0])
            first[0] = False
            return orjson.dumps({"type": typ, "object": tbl}) + b"\n"
        return orjson.dumps({"type": typ, "object": conversion.to_served(rt, version.name, obj)}) + b"\n"

    try:
        if expired is not None:
            await resp.write(orjson.dumps({"type": "ERROR", "object": expired.status()}) + b"\n")
            return resp
        assert watcher is not None
        watcher.bookmarks = watcher_bookmarks
        chunk = [encode(t, o) for t, o in initial]
        if send_initial and bookmarks:
            chunk.append(orjson.dumps({"type": BOOKMARK, "object": {
                "kind": rt.kind, "apiVersion": api_version,
                "metadata": {"resourceVersion": str(watcher.last_rev),
                             "annotations": {"k8s.io/initial-events-end": "true"}}}}) + b"\n")
        if chunk:
            await resp.write(b"".join(chunk))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(watcher.queue.get(), remaining)
            except TimeoutError:
                break
            items = [item]
            while not watcher.queue.empty() and len(items) < 256:
                items.append(watcher.queue.get_nowait())
            out = []
            closing = False
            for typ, obj, ev in items:
                if typ == "CLOSE":
                    closing = True
                    break
                if typ == BOOKMARK:
                    out.append(orjson.dumps({"type": BOOKMARK, "object": {
                        "kind": rt.kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": str(obj)}}}) + b"\n")
                    continue
                assert isinstance(obj, dict)
                out.append(_cached_encode(ev, typ, rt, version) if (ev is not None and not table)
                           else encode(typ, obj))
            if out:
                await resp.write(b"".join(out))
            if closing:
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if watcher is not None:
            srv.hub.remove(watcher)
    return resp


def _cached_encode(ev: Event, typ: str, rt: ResourceType, version: Version) -> bytes:
    """One serialization per event, type and version, shared by every watcher (100 watchers, 1 dumps)."""
    key = (typ, rt.group, version.name)
    cache = ev.cache
    if cache is None:
        cache = ev.cache = {}
    data = cache.get(key)
    if data is None:
        data = orjson.dumps({"type": typ, "object": conversion.to_served(rt, version.name, ev.obj)}) + b"\n"
        cache[key] = data
    return data
