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
            original_list = result.get(key)
            merged_list = _merge_list(original_list, value, merge_key, items, resolve)
            order = patch.get(_SET_ORDER_PREFIX + key)
            if isinstance(order, list):
                merged_list = _apply_order(merged_list, order, original_list, merge_key)
            result[key] = merged_list
        else:
            result[key] = value
    return result


def _merge_list(original: Any, patch: list[Any], merge_key: str | None, items: Obj | None,
                resolve: Resolver) -> list[Any]:
    """Merge a list with patchStrategy merge, ordered as upstream's normalizeElementOrder/mergeSortedSlice:
    items only on the server keep their order; patch items are merged in, and an item new to the server
    sorts before the server's items it is compared with (its server index is -1)."""
    orig = list(original) if isinstance(original, list) else []
    if any(isinstance(p, dict) and p.get(_DIRECTIVE) == "replace" and len(p) == 1 for p in patch):
        return [p for p in patch if not (isinstance(p, dict) and p.get(_DIRECTIVE) == "replace")]
    maps = merge_key is not None and any(isinstance(p, dict) for p in patch)

    def ident(x: Any) -> Any:
        if maps:
            return x.get(merge_key) if isinstance(x, dict) else None
        return orjson_key(x)

    server_index = {ident(o): i for i, o in enumerate(orig)}
    by_id = {ident(o): o for o in orig}
    deleted: set[Any] = set()
    patched: list[Any] = []
    for p in patch:
        if maps:
            if not isinstance(p, dict):
                raise bad_request(f"found non-map element in a list merged by {merge_key}: {p!r}")
            key_val = p.get(merge_key)
            if key_val is None and p.get(_DIRECTIVE) != "delete":
                raise bad_request(f"map: {p} does not contain declared merge key: {merge_key}")
            if p.get(_DIRECTIVE) == "delete":
                deleted.add(key_val)
                continue
            merged = _merge_map(by_id.get(key_val, {}), p, items, resolve)
            if merged is None:
                deleted.add(key_val)
            else:
                patched.append(merged)
        else:
            if isinstance(p, dict) and p.get(_DIRECTIVE) == "delete":
                continue
            if ident(p) not in {ident(x) for x in patched}:
                patched.append(p)
    in_patch = {ident(x) for x in patched}
    server_only = [o for o in orig if ident(o) not in in_patch and ident(o) not in deleted]
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) and j < len(patched):
        li, ri = server_index.get(ident(server_only[i]), -1), server_index.get(ident(patched[j]), -1)
        if li >= 0 and ri >= 0 and li < ri:
            out.append(server_only[i])
            i += 1
        else:
            out.append(patched[j])
            j += 1
    out.extend(server_only[i:])
    out.extend(patched[j:])
    return out


def _apply_order(merged: list[Any], order: list[Any], original: Any, merge_key: str | None) -> list[Any]:
    """$setElementOrder (mergePatchIntoOriginal): items named in the order list take its order; the others
    keep the server's order and are interleaved by it (mergeSortedSlice)."""
    def ident(x: Any) -> Any:
        return x.get(merge_key) if (merge_key and isinstance(x, dict)) else orjson_key(x)

    order_index = {ident(o): i for i, o in enumerate(order)}
    server_index = {ident(o): i for i, o in enumerate(original if isinstance(original, list) else [])}
    patch_items = sorted((m for m in merged if ident(m) in order_index), key=lambda m: order_index[ident(m)])
    server_only = [m for m in merged if ident(m) not in order_index]
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) and j < len(patch_items):
        li, ri = server_index.get(ident(server_only[i]), -1), server_index.get(ident(patch_items[j]), -1)
        if li >= 0 and ri >= 0 and li < ri:
            out.append(server_only[i])
            i += 1
        else:
            out.append(patch_items[j])
            j += 1
    return out + server_only[i:] + patch_items[j:]


def orjson_key(x: Any) -> Any:
    """A hashable identity for a primitive list element."""
    return x if isinstance(x, (str, int, float, bool)) or x is None else repr(x)
