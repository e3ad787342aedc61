"""Admission: defaulting and validation per kind, one module each.

Upstream counterparts: each built-in registry's strategy (PrepareForCreate/Validate/ValidateUpdate in
k8s pkg/registry/<group>/<kind>/strategy.go) and the validating webhooks of CDI, HPP and KubeVirt.
A module registers `mutate(req)` and/or `validate(req) -> list[FieldError]` for a (group, plural);
validate may also raise an APIError (e.g. 403 Forbidden for quota).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import FieldError
from ..registry import ResourceType

Obj = dict[str, Any]

CREATE, UPDATE, DELETE = "CREATE", "UPDATE", "DELETE"


class Lookup(Protocol):
    def get(self, group: str, plural: str, namespace: str, name: str) -> Obj | None: ...

    def list(self, group: str, plural: str, namespace: str | None = None) -> list[Obj]: ...


@dataclass
class Request:
    operation: str
    rt: ResourceType
    namespace: str
    name: str
    obj: Obj | None
    old: Obj | None
    lookup: Lookup
    subresource: str | None = None
    dry_run: bool = False
    user: str = ""
    warnings: list[str] = field(default_factory=list)


Mutator = Callable[[Request], None]
Validator = Callable[[Request], list[FieldError]]

_MUTATORS: dict[tuple[str, str], list[Mutator]] = {}
_VALIDATORS: dict[tuple[str, str], list[tuple[frozenset[str], Validator]]] = {}


def mutator(group: str, plural: str) -> Callable[[Mutator], Mutator]:
    def register(fn: Mutator) -> Mutator:
        _MUTATORS.setdefault((group, plural), []).append(fn)
        return fn

    return register


def validator(group: str, plural: str, operations: tuple[str, ...] = ("CREATE", "UPDATE")
              ) -> Callable[[Validator], Validator]:
    """Register a validator for the given operations (DELETE requests carry only `req.old`)."""

    def register(fn: Validator) -> Validator:
        _VALIDATORS.setdefault((group, plural), []).append((frozenset(operations), fn))
        return fn

    return register


def mutate(req: Request) -> None:
    for fn in _MUTATORS.get((req.rt.group, req.rt.plural), ()):
        fn(req)


def validate(req: Request) -> list[FieldError]:
    errs: list[FieldError] = []
    for ops, fn in _VALIDATORS.get((req.rt.group, req.rt.plural), ()):
        if req.operation in ops:
            errs.extend(fn(req))
    return errs


def load_all() -> None:
    """Import every admission module so that they register themselves."""
    from . import (  # noqa: F401
        customresourcedefinition,
        datavolume,
        event,
        hostpathprovisioner,
        hyperconverged,
        namespace,
        persistentvolume,
        persistentvolumeclaim,
        pod,
        resourcequota,
        secret,
        storageclass,
    )
