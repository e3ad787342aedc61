"""The kinds the API server serves: built-ins and every established CustomResourceDefinition.

Upstream counterpart: the REST storage map of kube-apiserver plus apiextensions-apiserver's
`crdHandler`. A `ResourceType` is one group/plural with its served versions; objects are stored once,
in the storage version, and served in any served version (conversion strategy None: only
`apiVersion` changes, as for CRDs without a webhook).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Version:
    name: str
    served: bool = True
    storage: bool = False
    schema: Obj | None = None  # OpenAPI v3 schema of the whole object
    printer_columns: tuple[Obj, ...] = ()
    deprecated: bool = False
    deprecation_warning: str | None = None


@dataclass(frozen=True)
class ResourceType:
    group: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    versions: tuple[Version, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    verbs: tuple[str, ...] = ALL_VERBS
    builtin: bool = True
    # Where objects live: events.k8s.io/events shares storage with core/v1 events.
    storage_group: str | None = None
    storage_plural: str | None = None
    list_kind: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    @property
    def storage_version(self) -> str:
        for v in self.versions:
            if v.storage:
                return v.name
        return self.versions[0].name

    @property
    def served_versions(self) -> list[Version]:
        return [v for v in self.versions if v.served]

    @property
    def storage_id(self) -> tuple[str, str]:
        """(group, plural) of the stored objects."""
        return (self.storage_group if self.storage_group is not None else self.group,
                self.storage_plural or self.plural)

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def version(self, name: str) -> Version | None:
        for v in self.versions:
            if v.name == name and v.served:
                return v
        return None

    def has_status(self) -> bool:
        return "status" in self.subresources

    def key(self, namespace: str, name: str) -> str:
        g, p = self.storage_id
        return f"/{g or 'core'}/{p}/{namespace}/{name}" if self.namespaced else f"/{g or 'core'}/{p}/{name}"

    def prefix(self, namespace: str | None = None) -> str:
        g, p = self.storage_id
        base = f"/{g or 'core'}/{p}/"
        return f"{base}{namespace}/" if (self.namespaced and namespace) else base


class Registry:
    """Lookup of served resources by (group, version, plural) and by kind."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str], ResourceType] = {}
        self.generation = 0  # bumped on every change, so discovery/OpenAPI caches know to rebuild

    def add(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.plural)] = rt
        self.generation += 1

    def remove(self, group: str, plural: str) -> None:
        if self._types.pop((group, plural), None) is not None:
            self.generation += 1

    def get(self, group: str, plural: str) -> ResourceType | None:
        return self._types.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> tuple[ResourceType, Version] | None:
        rt = self._types.get((group, plural))
        if rt is None:
            return None
        v = rt.version(version)
        return (rt, v) if v else None

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        for rt in self._types.values():
            if rt.group == group and rt.kind == kind:
                return rt
        return None

    def by_api_version_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        return self.by_kind(group, kind)

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._types.values()))

    def groups(self) -> list[tuple[str, list[str]]]:
        """[(group, [versions, preferred first])], core group first, then groups in registration order."""
        seen: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = seen.setdefault(rt.group, [])
            for v in rt.served_versions:
                if v.name not in versions:
                    versions.append(v.name)
        out = [(g, _sort_versions(vs)) for g, vs in seen.items()]
        out.sort(key=lambda gv: (gv[0] != "", 0))
        return out

    def in_group_version(self, group: str, version: str) -> list[tuple[ResourceType, Version]]:
        out = []
        for rt in self._types.values():
            if rt.group == group:
                v = rt.version(version)
                if v:
                    out.append((rt, v))
        return out

    def namespaced(self) -> Iterable[ResourceType]:
        """Types stored under a namespace, each storage location once (for namespace cleanup)."""
        seen = set()
        for rt in self._types.values():
            if rt.namespaced and rt.storage_id not in seen and rt.storage_id == (rt.group, rt.plural):
                seen.add(rt.storage_id)
                yield rt


def _version_priority(v: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first (apimachinery version.CompareKubeAwareVersionStrings)."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {"": 0, None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)


def _sort_versions(versions: list[str]) -> list[str]:
    return sorted(versions, key=_version_priority)
