"""StorageClass: defaults, and parameters/provisioner/reclaimPolicy/volumeBindingMode immutable (R3).

Upstream: k8s pkg/apis/storage/validation/validation.go (ValidateStorageClass, ValidateStorageClassUpdate)
and pkg/apis/storage/v1/defaults.go.
"""

from __future__ import annotations

from ..errors import FieldError, forbidden_field, not_supported, required
from . import UPDATE, Request, mutator, validator


@mutator("storage.k8s.io", "storageclasses")
def default_storageclass(req: Request) -> None:
    obj = req.obj
    assert obj is not None
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


@validator("storage.k8s.io", "storageclasses")
def validate_storageclass(req: Request) -> list[FieldError]:
    obj = req.obj
    assert obj is not None
    errs: list[FieldError] = []
    if not obj.get("provisioner"):
        errs.append(required("provisioner"))
    if obj.get("reclaimPolicy") not in ("Delete", "Retain"):
        errs.append(not_supported("reclaimPolicy", obj.get("reclaimPolicy"), ["Delete", "Retain"]))
    if obj.get("volumeBindingMode") not in ("Immediate", "WaitForFirstConsumer"):
        errs.append(not_supported("volumeBindingMode", obj.get("volumeBindingMode"),
                                  ["Immediate", "WaitForFirstConsumer"]))
    if req.operation == UPDATE and req.old is not None:
        old = req.old
        if (obj.get("parameters") or {}) != (old.get("parameters") or {}):
            errs.append(forbidden_field("parameters", "updates to parameters are forbidden."))
        if obj.get("provisioner") != old.get("provisioner"):
            errs.append(forbidden_field("provisioner", "updates to provisioner are forbidden."))
        if obj.get("reclaimPolicy") != old.get("reclaimPolicy"):
            errs.append(forbidden_field("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
        if obj.get("volumeBindingMode") != old.get("volumeBindingMode"):
            errs.append(forbidden_field("volumeBindingMode", "field is immutable"))
    return errs
