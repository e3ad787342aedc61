"""Converting stored objects to and from the version a client asked for.

Custom resources use conversion strategy None (only apiVersion changes), as upstream CRDs without a
webhook. events.k8s.io/v1 Events share storage with core/v1 Events; the field mapping follows
k8s pkg/apis/events/v1/conversion.go.
"""

from __future__ import annotations

from typing import Any

from .registry import ResourceType

Obj = dict[str, Any]

# core/v1 field -> events.k8s.io/v1 field
_EVENT_FIELDS = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}
_EVENT_FIELDS_BACK = {v: k for k, v in _EVENT_FIELDS.items()}


def to_served(rt: ResourceType, version: str, stored: Obj) -> Obj:
    """The stored object as `rt` at `version` (a shallow copy when anything changes)."""
    api_version = rt.api_version(version)
    if rt.group == "events.k8s.io":
        out = {_EVENT_FIELDS.get(k, k): v for k, v in stored.items()}
        out["apiVersion"] = api_version
        out["kind"] = "Event"
        return out
    if stored.get("apiVersion") == api_version:
        return stored
    out = dict(stored)
    out["apiVersion"] = api_version
    return out


def to_storage(rt: ResourceType, obj: Obj) -> Obj:
    """An incoming object as it is stored (in place where possible)."""
    if rt.group == "events.k8s.io":
        out = {_EVENT_FIELDS_BACK.get(k, k): v for k, v in obj.items()}
        out["apiVersion"] = "v1"
        out["kind"] = "Event"
        if "series" in out and isinstance(out["series"], dict):
            out.setdefault("count", out["series"].get("count"))
        return out
    obj["apiVersion"] = rt.api_version(rt.storage_version)
    return obj
