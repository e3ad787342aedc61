"""Decoding `application/vnd.kubernetes.protobuf` request bodies into JSON objects.

kubectl 1.32's typed clients send protobuf for built-in kinds: `kubectl create namespace`,
`create configmap`, `create secret`, `create serviceaccount`, `create quota`. The envelope is
apimachinery's runtime.Unknown after the magic `k8s\\0` (pkg/runtime/serializer/protobuf/protobuf.go);
the payload is the kind's message. Field numbers below are from upstream's generated.proto files
(k8s.io/api core/v1, k8s.io/apimachinery meta/v1, runtime, api/resource); the proto field names are
the JSON names. Only what those generators send is described; vdisk answers in JSON, which every
client accepts.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from .errors import bad_request, unsupported_media_type

Obj = dict[str, Any]
PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# message name -> {field number: (json name, type, repeated)}; types: string, bytes, bool, int64, int32,
# a message name, or ("map", key type, value type).
F = tuple[str, Any, bool]
SCHEMA: dict[str, dict[int, F]] = {
    "Unknown": {1: ("typeMeta", "RuntimeTypeMeta", False), 2: ("raw", "bytes", False),
                3: ("contentEncoding", "string", False), 4: ("contentType", "string", False)},
    "RuntimeTypeMeta": {1: ("apiVersion", "string", False), 2: ("kind", "string", False)},
    "ObjectMeta": {1: ("name", "string", False), 2: ("generateName", "string", False),
                   3: ("namespace", "string", False), 4: ("selfLink", "string", False), 5: ("uid", "string", False),
                   6: ("resourceVersion", "string", False), 7: ("generation", "int64", False),
                   8: ("creationTimestamp", "Time", False), 9: ("deletionTimestamp", "Time", False),
                   10: ("deletionGracePeriodSeconds", "int64", False),
                   11: ("labels", ("map", "string", "string"), False),
                   12: ("annotations", ("map", "string", "string"), False),
                   13: ("ownerReferences", "OwnerReference", True), 14: ("finalizers", "string", True)},
    "OwnerReference": {5: ("apiVersion", "string", False), 1: ("kind", "string", False), 3: ("name", "string", False),
                       4: ("uid", "string", False), 6: ("controller", "bool", False),
                       7: ("blockOwnerDeletion", "bool", False)},
    "Time": {1: ("seconds", "int64", False), 2: ("nanos", "int32", False)},
    "Quantity": {1: ("string", "string", False)},
    "ObjectReference": {1: ("kind", "string", False), 2: ("namespace", "string", False), 3: ("name", "string", False),
                        4: ("uid", "string", False), 5: ("apiVersion", "string", False),
                        6: ("resourceVersion", "string", False), 7: ("fieldPath", "string", False)},
    "LocalObjectReference": {1: ("name", "string", False)},
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False)},
    "NamespaceSpec": {1: ("finalizers", "string", True)},
    "ConfigMap": {1: ("metadata", "ObjectMeta", False), 4: ("immutable", "bool", False),
                  2: ("data", ("map", "string", "string"), False),
                  3: ("binaryData", ("map", "string", "bytes"), False)},
    "Secret": {1: ("metadata", "ObjectMeta", False), 5: ("immutable", "bool", False),
               2: ("data", ("map", "string", "bytes"), False), 4: ("stringData", ("map", "string", "string"), False),
               3: ("type", "string", False)},
    "ServiceAccount": {1: ("metadata", "ObjectMeta", False), 2: ("secrets", "ObjectReference", True),
                       3: ("imagePullSecrets", "LocalObjectReference", True),
                       4: ("automountServiceAccountToken", "bool", False)},
    "ResourceQuota": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "ResourceQuotaSpec", False)},
    "ResourceQuotaSpec": {1: ("hard", ("map", "string", "Quantity"), False), 2: ("scopes", "string", True),
                          3: ("scopeSelector", "ScopeSelector", False)},
    "ScopeSelector": {1: ("matchExpressions", "ScopedResourceSelectorRequirement", True)},
    "ScopedResourceSelectorRequirement": {1: ("scopeName", "string", False), 2: ("operator", "string", False),
                                          3: ("values", "string", True)},
    # authorization.k8s.io/v1 (kubectl auth can-i)
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "SelfSubjectAccessReviewSpec", False)},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", False),
                                    2: ("nonResourceAttributes", "NonResourceAttributes", False)},
    "ResourceAttributes": {1: ("namespace", "string", False), 2: ("verb", "string", False),
                           3: ("group", "string", False), 4: ("version", "string", False),
                           5: ("resource", "string", False), 6: ("subresource", "string", False),
                           7: ("name", "string", False)},
    "NonResourceAttributes": {1: ("path", "string", False), 2: ("verb", "string", False)},
}
KINDS = {("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "ServiceAccount"),
         ("v1", "ResourceQuota"), ("authorization.k8s.io/v1", "SelfSubjectAccessReview")}


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def varint(self) -> int:
        shift = result = 0
        while True:
            if self.pos >= len(self.data):
                raise bad_request("protobuf body is truncated")
            b = self.data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise bad_request("protobuf varint is too long")

    def field(self) -> tuple[int, int, Any]:
        key = self.varint()
        num, wire = key >> 3, key & 7
        if wire == 0:
            return num, wire, self.varint()
        if wire == 2:
            n = self.varint()
            if self.pos + n > len(self.data):
                raise bad_request("protobuf body is truncated")
            chunk = self.data[self.pos:self.pos + n]
            self.pos += n
            return num, wire, chunk
        if wire == 1:
            chunk = self.data[self.pos:self.pos + 8]
            self.pos += 8
            return num, wire, int.from_bytes(chunk, "little")
        if wire == 5:
            chunk = self.data[self.pos:self.pos + 4]
            self.pos += 4
            return num, wire, int.from_bytes(chunk, "little")
        raise bad_request(f"unsupported protobuf wire type {wire}")

    def done(self) -> bool:
        return self.pos >= len(self.data)


def _scalar(typ: str, value: Any) -> Any:
    if typ == "string":
        return value.decode("utf-8")
    if typ == "bytes":
        return base64.b64encode(value).decode()
    if typ == "bool":
        return bool(value)
    if typ in ("int64", "int32"):
        return value - (1 << 64) if value >= (1 << 63) else value
    return decode_message(typ, value)


def decode_message(name: str, data: bytes) -> Any:
    fields = SCHEMA[name]
    out: Obj = {}
    r = _Reader(data)
    while not r.done():
        num, _wire, value = r.field()
        spec = fields.get(num)
        if spec is None:
            continue  # a field newer than this table: dropped, as an unknown JSON field would be
        json_name, typ, repeated = spec
        if isinstance(typ, tuple):
            _, ktype, vtype = typ
            entry = _Reader(value)
            k: Any = ""
            v: Any = None
            while not entry.done():
                n, _, val = entry.field()
                if n == 1:
                    k = _scalar(ktype, val)
                elif n == 2:
                    v = _scalar(vtype, val)
            if v is None:
                v = "" if vtype in ("string", "bytes") else {}
            out.setdefault(json_name, {})[k] = v
        elif repeated:
            out.setdefault(json_name, []).append(_scalar(typ, value))
        else:
            out[json_name] = _scalar(typ, value)
    if name == "Time":
        if not out.get("seconds") and not out.get("nanos"):
            return None  # metav1.Time's zero value is null in JSON
        return datetime.fromtimestamp(out.get("seconds", 0), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if name == "Quantity":
        return out.get("string", "0")
    return out


def decode(body: bytes) -> Obj:
    """A protobuf request body as the JSON object it encodes."""
    if not body.startswith(MAGIC):
        raise bad_request("protobuf body does not start with the Kubernetes magic prefix")
    unknown = decode_message("Unknown", body[len(MAGIC):])
    tm = unknown.get("typeMeta") or {}
    api_version, kind = tm.get("apiVersion", ""), tm.get("kind", "")
    if (api_version, kind) not in KINDS:
        raise unsupported_media_type(f"{PROTOBUF} bodies are accepted for {', '.join(sorted(k for _, k in KINDS))}; "
                                     f"send {kind or 'this object'} as application/json (e.g. kubectl create -f)")
    obj = decode_message(kind, base64.b64decode(unknown.get("raw", "")))
    return {"apiVersion": api_version, "kind": kind, **obj}
