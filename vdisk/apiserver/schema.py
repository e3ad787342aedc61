"""Structural schemas: pruning of unknown fields, defaulting, and validation.

Upstream: apiextensions-apiserver pkg/apiserver/schema/pruning/algorithm.go (pruning),
pkg/apiserver/schema/defaulting/algorithm.go (defaults), and the go-openapi validator behind
pkg/apiserver/validation (messages such as `spec.x in body must be of type integer: "string"`).
Built-in kinds use the same walk over their upstream OpenAPI definitions; for them unknown fields
are what Go's strict JSON decoding would report.

Not done: CEL rules (`x-kubernetes-validations`) and `format` checks beyond int-or-string.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import FieldError, invalid_value, not_supported, required

Obj = dict[str, Any]
Resolver = Callable[[Obj | None], Obj | None]

_METADATA_KEYS = {"apiVersion", "kind", "metadata"}


def identity_resolver(node: Obj | None) -> Obj | None:
    return node


def make_resolver(definitions: dict[str, Obj]) -> Resolver:
    """Follows `$ref` and single-element `allOf` to the node that carries type and properties."""

    def resolve(node: Obj | None) -> Obj | None:
        if node is None or ("$ref" not in node and "allOf" not in node):
            return node  # the common case, kept cheap: a create walks ~50 nodes
        seen = 0
        while isinstance(node, dict) and seen < 16:
            seen += 1
            ref = node.get("$ref")
            if isinstance(ref, str):
                node = definitions.get(ref.rsplit("/", 1)[-1])
                continue
            all_of = node.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and "properties" not in node and "type" not in node:
                node = all_of[0]
                continue
            break
        return node

    return resolve


@dataclass
class WalkResult:
    unknown: list[str] = field(default_factory=list)  # paths of pruned fields, e.g. "spec.foo"
    errors: list[FieldError] = field(default_factory=list)


def type_invalid(path: str, value: Any, expected: str) -> FieldError:
    """go-openapi's InvalidTypeCode as apiextensions reports it: the bad value is the JSON type name."""
    actual = _type_name(value)
    return FieldError("FieldValueTypeInvalid", path, f'{path} in body must be of type {expected}: "{actual}"', actual)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or (isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    return True


class Walker:
    """One pass over an object: prune unknown fields, apply defaults, collect validation errors."""

    def __init__(self, resolve: Resolver, *, prune: bool = True, defaults: bool = False, validate: bool = True,
                 metadata_schema: Obj | None = None):
        self.resolve = resolve
        self.prune = prune
        self.defaults = defaults
        self.validate = validate
        self.metadata_schema = metadata_schema

    def walk_root(self, obj: Obj, schema: Obj | None) -> WalkResult:
        result = WalkResult()
        node = self.resolve(schema)
        if node is None:
            return result
        self._walk_object(obj, node, "", result, root=True)
        return result

    # The object-level walk; `root` and embedded resources keep apiVersion/kind/metadata.
    def _walk_object(self, obj: Obj, node: Obj, path: str, result: WalkResult, root: bool = False) -> None:
        props: Obj = node.get("properties") or {}
        addl = node.get("additionalProperties")
        preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
        embedded = root or bool(node.get("x-kubernetes-embedded-resource"))
        if self.defaults:
            for key, sub in props.items():
                if key not in obj:
                    eff = self.resolve(sub) or {}
                    if "default" in eff:
                        obj[key] = _copy(eff["default"])
                    elif "default" in sub:
                        obj[key] = _copy(sub["default"])
        for key in list(obj.keys()):
            value = obj[key]
            sub = props.get(key)
            if sub is None and isinstance(addl, dict):
                sub = addl
            if embedded and key in _METADATA_KEYS:
                if key == "metadata" and self.metadata_schema is not None and isinstance(value, dict):
                    # CRD schemas describe metadata loosely; ObjectMeta decides what is known there.
                    self._walk_object(value, self.metadata_schema, _join(path, key), result)
                    continue
                if key not in props:
                    continue
            if sub is None:
                if preserve or addl is True:
                    continue
                if self.prune:
                    result.unknown.append(_join(path, key))
                    del obj[key]
                continue
            if value is None:
                eff = self.resolve(sub) or {}
                if not (eff.get("nullable") or sub.get("nullable")):
                    del obj[key]  # null for a non-nullable field is pruned, as upstream does for CRDs
                continue
            self._walk_value(obj, key, value, sub, _join(path, key), result)
        if self.validate:
            for name in node.get("required") or []:
                if name not in obj:
                    result.errors.append(required(_join(path, name)))

    def _walk_value(self, parent: Any, key: Any, value: Any, sub: Obj, path: str, result: WalkResult) -> None:
        node = self.resolve(sub) or {}
        if node.get("x-kubernetes-int-or-string") or sub.get("x-kubernetes-int-or-string"):
            if self.validate and (not isinstance(value, (int, str)) or isinstance(value, bool)):
                result.errors.append(type_invalid(path, value, "integer,string"))
            return
        one_of = node.get("oneOf") or node.get("anyOf")
        typ = node.get("type")
        if typ is None and isinstance(one_of, list) and all("type" in (self.resolve(o) or {}) for o in one_of):
            types = [(self.resolve(o) or {}).get("type") for o in one_of]
            if self.validate and not any(_type_ok(t, value) for t in types if isinstance(t, str)):
                result.errors.append(type_invalid(path, value, ",".join(str(t) for t in types)))
            return
        if isinstance(typ, list):
            typ = typ[0] if typ else None
        if typ is not None and not _type_ok(typ, value):
            if self.validate:
                result.errors.append(type_invalid(path, value, typ))
            return
        if typ == "integer" and isinstance(value, float):
            parent[key] = int(value)
            value = parent[key]
        if typ == "object" or (typ is None and isinstance(value, dict) and ("properties" in node or
                                                                           "additionalProperties" in node)):
            if isinstance(value, dict):
                self._walk_object(value, node, path, result)
        elif typ == "array" or (typ is None and isinstance(value, list) and "items" in node):
            items = node.get("items")
            if isinstance(value, list) and isinstance(items, dict):
                for i, item in enumerate(value):
                    ipath = f"{path}[{i}]"
                    if item is None:
                        continue
                    self._walk_value(value, i, item, items, ipath, result)
            if self.validate and isinstance(value, list):
                self._check_array(value, node, path, result)
        elif self.validate:
            self._check_scalar(value, node, path, result)

    def _check_array(self, value: list[Any], node: Obj, path: str, result: WalkResult) -> None:
        mn, mx = node.get("minItems"), node.get("maxItems")
        if mn is not None and len(value) < mn:
            result.errors.append(invalid_value(path, len(value), f"{path} in body should have at least {mn} items"))
        if mx is not None and len(value) > mx:
            result.errors.append(FieldError("FieldValueTooMany", path, f"must have at most {mx} items", len(value)))

    def _check_scalar(self, value: Any, node: Obj, path: str, result: WalkResult) -> None:
        enum = node.get("enum")
        if enum and value not in enum:
            result.errors.append(not_supported(path, value, [str(e) for e in enum]))
            return
        if isinstance(value, str):
            pattern = node.get("pattern")
            if pattern and not re.search(pattern, value):
                result.errors.append(invalid_value(path, value, f"{path} in body should match '{pattern}'"))
            mx = node.get("maxLength")
            if mx is not None and len(value) > mx:
                result.errors.append(FieldError("FieldValueTooLong", path, f"may not be more than {mx} bytes",
                                                value))
            mn = node.get("minLength")
            if mn is not None and len(value) < mn:
                result.errors.append(invalid_value(path, value, f"{path} in body should be at least {mn} chars long"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            mn, mx = node.get("minimum"), node.get("maximum")
            if mn is not None and (value < mn or (node.get("exclusiveMinimum") is True and value == mn)):
                result.errors.append(invalid_value(path, value, f"{path} in body should be greater than or equal "
                                                                f"to {mn}"))
            if mx is not None and (value > mx or (node.get("exclusiveMaximum") is True and value == mx)):
                result.errors.append(invalid_value(path, value, f"{path} in body should be less than or equal to {mx}"))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
