"""PATCH bodies: JSON merge patch, JSON patch, and strategic merge patch.

Upstream: k8s.io/apiserver pkg/endpoints/handlers/patch.go (dispatch and errors),
k8s.io/apimachinery pkg/util/strategicpatch/patch.go (strategic merge). No maintained Python
library implements strategic merge patch, so it is written here; merge keys and strategies come from
the kind's OpenAPI schema (`x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`), the same
source kubectl reads them from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonpatch
import jsonpointer

from .errors import APIError, bad_request

Obj = dict[str, Any]
Resolver = Callable[[Obj | None], Obj | None]  # follows $ref/allOf to the effective schema node

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Obj, patch: Any) -> Obj:
    """RFC 6902 (with `test`). Failures are 422, as upstream answers them."""
    if not isinstance(patch, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        result = jsonpatch.apply_patch(target, patch, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}",
                       {"causes": [{"reason": "FieldValueInvalid", "message": str(exc)}]}) from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError, IndexError) as exc:
        raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}",
                       {"causes": [{"reason": "FieldValueInvalid", "message": str(exc)}]}) from exc
    if not isinstance(result, dict):
        raise APIError(422, "Invalid", "the server rejected our request due to an error in our request: "
                       "the patch replaced the whole object with a non-object")
    return result


# --- strategic merge patch ------------------------------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER_PREFIX = "$setElementOrder/"
_DELETE_PRIMITIVE_PREFIX = "$deleteFromPrimitiveList/"


def strategic_merge_patch(original: Obj, patch: Obj, schema: Obj | None, resolve: Resolver) -> Obj:
    """Apply a two-way strategic merge patch to `original` (neither argument is modified)."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    result = _merge_map(original, patch, resolve(schema), resolve)
    return result if result is not None else {}


def _field_schema(schema: Obj | None, key: str, resolve: Resolver) -> Obj | None:
    if not schema:
        return None
    props = schema.get("properties")
    if props and key in props:
        node = props[key]
        # Keep the patch extensions of the referencing node: they sit beside the $ref/items.
        return node
    addl = schema.get("additionalProperties")
    if isinstance(addl, dict):
        return addl
    return None


def _merge_map(original: Any, patch: Obj, schema: Obj | None, resolve: Resolver) -> Obj | None:
    directive = patch.get(_DIRECTIVE)
    if directive == "replace":
        return {k: v for k, v in patch.items() if k != _DIRECTIVE}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise bad_request(f"Unknown patch type: {directive} in map: {patch}")
    result: Obj = dict(original) if isinstance(original, dict) else {}
    retain = patch.get(_RETAIN_KEYS)
    if isinstance(retain, list):
        keep = set(retain)
        result = {k: v for k, v in result.items() if k in keep}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN_KEYS) or key.startswith(_SET_ORDER_PREFIX):
            continue
        if key.startswith(_DELETE_PRIMITIVE_PREFIX):
            fld = key[len(_DELETE_PRIMITIVE_PREFIX):]
            if isinstance(result.get(fld), list) and isinstance(value, list):
                result[fld] = [x for x in result[fld] if x not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        node = _field_schema(schema, key, resolve)
        strategy = (node or {}).get("x-kubernetes-patch-strategy", "")
        merge_key = (node or {}).get("x-kubernetes-patch-merge-key")
        eff = resolve(node)
        if isinstance(value, dict):
            merged = _merge_map(result.get(key), value, eff, resolve)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and "merge" in strategy.split(","):
            items = resolve((eff or {}).get("items")) if eff else None
            result[key] = _merge_list(result.get(key), value, merge_key, items, resolve)
        else:
            result[key] = value
    return result


def _merge_list(original: Any, patch: list[Any], merge_key: str | None, items: Obj | None,
                resolve: Resolver) -> list[Any]:
    orig = list(original) if isinstance(original, list) else []
    # A {"$patch": "replace"} element replaces the whole list with the other elements.
    if any(isinstance(p, dict) and p.get(_DIRECTIVE) == "replace" and len(p) == 1 for p in patch):
        return [p for p in patch if not (isinstance(p, dict) and p.get(_DIRECTIVE) == "replace")]
    if not patch or not isinstance(patch[0], dict) or merge_key is None:
        # Primitive list merged as a set, keeping order (e.g. finalizers).
        out = list(orig)
        for p in patch:
            if isinstance(p, dict) and p.get(_DIRECTIVE) == "delete":
                continue
            if p not in out:
                out.append(p)
        return out
    out = list(orig)
    for p in patch:
        if not isinstance(p, dict):
            raise bad_request(f"found non-map element in a list merged by {merge_key}: {p!r}")
        key_val = p.get(merge_key)
        if key_val is None and p.get(_DIRECTIVE) != "delete":
            raise bad_request(f"map: {p} does not contain declared merge key: {merge_key}")
        idx = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(merge_key) == key_val), None)
        if p.get(_DIRECTIVE) == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            merged = _merge_map({}, p, items, resolve)
            if merged is not None:
                out.append(merged)
        else:
            merged = _merge_map(out[idx], p, items, resolve)
            if merged is None:
                out.pop(idx)
            else:
                out[idx] = merged
    return out
