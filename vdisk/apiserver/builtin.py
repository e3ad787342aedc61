"""The built-in kinds vdisk serves, with their upstream names, scopes and short names.

Upstream: `kubectl api-resources` of a v1.32 cluster. Schemas are the upstream OpenAPI definitions in
openapi_data/builtin.json (see tools/gen_builtin_openapi.py); printing lives in printers.py.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

from .registry import ALL_VERBS, ResourceType, Version

Obj = dict[str, Any]

_DATA = pathlib.Path(__file__).parent / "openapi_data" / "builtin.json"


@functools.cache
def definitions() -> dict[str, Obj]:
    """Upstream OpenAPI v3 component schemas of the built-in kinds, by definition name."""
    schemas: dict[str, Obj] = json.loads(_DATA.read_text())["schemas"]
    return schemas


OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _rt(group: str, version: str, kind: str, plural: str, namespaced: bool, definition: str,
        short: tuple[str, ...] = (), categories: tuple[str, ...] = (), sub: tuple[str, ...] = (),
        verbs: tuple[str, ...] | None = None, singular: str | None = None, **kw: Any) -> ResourceType:
    return ResourceType(
        group=group, plural=plural, singular=singular or kind.lower(), kind=kind, namespaced=namespaced,
        versions=(Version(version, served=True, storage=True),), short_names=short, categories=categories,
        subresources=frozenset(sub), builtin=True, extra={"definition": definition},
        verbs=verbs or ALL_VERBS, storage_group=kw.get("storage_group"), storage_plural=kw.get("storage_plural"),
    )


CORE = "io.k8s.api.core.v1."


def builtin_types() -> list[ResourceType]:
    return [
        _rt("", "v1", "Namespace", "namespaces", False, CORE + "Namespace", ("ns",), sub=("status", "finalize"),
            verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
        _rt("", "v1", "Node", "nodes", False, CORE + "Node", ("no",), sub=("status",)),
        _rt("", "v1", "Pod", "pods", True, CORE + "Pod", ("po",), ("all",), sub=("status", "log")),
        _rt("", "v1", "PersistentVolume", "persistentvolumes", False, CORE + "PersistentVolume", ("pv",),
            sub=("status",)),
        _rt("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, CORE + "PersistentVolumeClaim",
            ("pvc",), sub=("status",)),
        _rt("", "v1", "ConfigMap", "configmaps", True, CORE + "ConfigMap", ("cm",)),
        _rt("", "v1", "Secret", "secrets", True, CORE + "Secret"),
        _rt("", "v1", "Event", "events", True, CORE + "Event", ("ev",)),
        _rt("", "v1", "ResourceQuota", "resourcequotas", True, CORE + "ResourceQuota", ("quota",), sub=("status",)),
        _rt("", "v1", "ServiceAccount", "serviceaccounts", True, CORE + "ServiceAccount", ("sa",)),
        _rt("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, "io.k8s.api.storage.v1.StorageClass",
            ("sc",)),
        _rt("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False, "io.k8s.api.storage.v1.CSIDriver"),
        _rt("events.k8s.io", "v1", "Event", "events", True, "io.k8s.api.events.v1.Event", ("ev",),
            storage_group="", storage_plural="events"),
        _rt("coordination.k8s.io", "v1", "Lease", "leases", True, "io.k8s.api.coordination.v1.Lease"),
        _rt("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False,
            "io.k8s.api.authorization.v1.SelfSubjectAccessReview", verbs=("create",)),
        _rt("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition", ("crd", "crds"),
            sub=("status",)),
    ]
