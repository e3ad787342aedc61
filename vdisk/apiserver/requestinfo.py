"""Parse a request path into what it addresses, as k8s.io/apiserver pkg/endpoints/request/requestinfo.go.

    /api/v1/namespaces/default/persistentvolumeclaims/x/status
    -> RequestInfo(group="", version="v1", namespace="default", resource="persistentvolumeclaims",
                   name="x", subresource="status")
"""

from __future__ import annotations

from dataclasses import dataclass

# Namespace subresources that would otherwise look like a resource name under /namespaces/{ns}/.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class RequestInfo:
    group: str
    version: str
    namespace: str | None  # None: cluster scope or all namespaces
    resource: str
    name: str = ""
    subresource: str = ""


def parse_resource_path(path: str) -> RequestInfo | None:
    """None when the path is not a resource path (/api, /apis/<g>, discovery and the like)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES):
        namespace = rest[1]
        rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3:
        return None
    return RequestInfo(group, version, namespace, resource, name, sub)
