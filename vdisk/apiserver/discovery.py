"""API discovery: aggregated v2 on /api and /apis, and the legacy documents.

Upstream: k8s.io/apiserver pkg/endpoints/discovery (aggregated/handler.go, legacy.go, group.go,
version.go). kubectl takes the aggregated form when the response Content-Type is exactly
AGGREGATED_CONTENT_TYPE; Python clients use the legacy documents.
"""

from __future__ import annotations

from typing import Any

from .registry import Registry, ResourceType, Version

Obj = dict[str, Any]

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

# Subresource verbs as upstream serves them.
_SUB_VERBS = {
    "status": ["get", "patch", "update"],
    "finalize": ["update"],
    "log": ["get"],
    "scale": ["get", "patch", "update"],
}


def wants_aggregated(accept: str) -> str | None:
    """The aggregated content type to answer with, if the client asked for one."""
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "g=apidiscovery.k8s.io" in p and "as=APIGroupDiscoveryList" in p:
            if "v=v2beta1" in p:
                return AGGREGATED_V2BETA1
            if "v=v2" in p:
                return AGGREGATED_CONTENT_TYPE
    return None


def _gvk(rt: ResourceType, version: str) -> Obj:
    return {"group": rt.group, "version": version, "kind": rt.kind}


def _resource_discovery(rt: ResourceType, v: Version) -> Obj:
    entry: Obj = {
        "resource": rt.plural,
        "responseKind": _gvk(rt, v.name),
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": sorted(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    subs = []
    for sub in sorted(rt.subresources):
        s: Obj = {"subresource": sub, "verbs": _SUB_VERBS.get(sub, ["get"])}
        if sub in ("status", "finalize"):
            s["responseKind"] = _gvk(rt, v.name)
        elif sub == "scale":
            s["responseKind"] = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
        elif sub == "log":
            s["responseKind"] = {"group": "", "version": "", "kind": "Pod"}
        subs.append(s)
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(registry: Registry, core: bool, content_type: str) -> Obj:
    items = []
    for group, versions in registry.groups():
        if (group == "") != core:
            continue
        item: Obj = {"metadata": {"creationTimestamp": None}, "versions": []}
        if group:
            item["metadata"]["name"] = group
        for vname in versions:
            resources = sorted((_resource_discovery(rt, v) for rt, v in registry.in_group_version(group, vname)),
                               key=lambda r: r["resource"])
            item["versions"].append({"version": vname, "resources": resources, "freshness": "Current"})
        items.append(item)
    api_version = "apidiscovery.k8s.io/v2beta1" if content_type == AGGREGATED_V2BETA1 else "apidiscovery.k8s.io/v2"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}


def api_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(group: str, versions: list[str]) -> Obj:
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(registry: Registry) -> Obj:
    groups = [_group(g, vs) for g, vs in registry.groups() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> Obj | None:
    for g, vs in registry.groups():
        if g == group and g:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(g, vs)}
    return None


def api_resource_list(registry: Registry, group: str, version: str) -> Obj | None:
    pairs = registry.in_group_version(group, version)
    if not pairs:
        return None
    resources = []
    for rt, _ in sorted(pairs, key=lambda p: p[0].plural):
        r: Obj = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind,
                  "verbs": sorted(rt.verbs)}
        if rt.short_names:
            r["shortNames"] = list(rt.short_names)
        if rt.categories:
            r["categories"] = list(rt.categories)
        resources.append(r)
        for sub in sorted(rt.subresources):
            resources.append({"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                              "kind": "Pod" if sub == "log" else rt.kind, "verbs": _SUB_VERBS.get(sub, ["get"])})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
