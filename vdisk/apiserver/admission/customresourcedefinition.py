"""CustomResourceDefinition: group and names may not change once served.

Upstream: apiextensions-apiserver pkg/apis/apiextensions/validation (ValidateCustomResourceDefinitionUpdate).
The create-time checks live in ..crd (they also run for CRDs vdisk installs itself).
"""

from __future__ import annotations

from ..errors import FieldError, invalid_value
from . import UPDATE, Request, validator


@validator("apiextensions.k8s.io", "customresourcedefinitions")
def validate_crd_update(req: Request) -> list[FieldError]:
    if req.operation != UPDATE or req.old is None or req.obj is None:
        return []
    errs: list[FieldError] = []
    old, new = req.old.get("spec") or {}, req.obj.get("spec") or {}
    if old.get("group") != new.get("group"):
        errs.append(invalid_value("spec.group", new.get("group"), "field is immutable"))
    if old.get("scope") != new.get("scope"):
        errs.append(invalid_value("spec.scope", new.get("scope"), "field is immutable"))
    if (old.get("names") or {}).get("plural") != (new.get("names") or {}).get("plural"):
        errs.append(invalid_value("spec.names.plural", (new.get("names") or {}).get("plural"), "field is immutable"))
    return errs
