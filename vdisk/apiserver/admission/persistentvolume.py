"""PersistentVolume: defaults and validation (one volume source, local needs node affinity, no Recycle).

Upstream: k8s pkg/apis/core/validation/validation.go (ValidatePersistentVolume[Update]) and
pkg/apis/core/v1/defaults.go. vdisk refuses the deprecated Recycle policy outright (R43).
"""

from __future__ import annotations

from ...quantity import Quantity, QuantityError
from ..errors import FieldError, forbidden_field, invalid_value, not_supported, required
from . import CREATE, UPDATE, Request, mutator, validator

SOURCES = ("local", "hostPath", "csi", "nfs", "iscsi", "fc", "rbd", "cephfs", "cinder", "glusterfs", "flexVolume",
           "awsElasticBlockStore", "gcePersistentDisk", "azureDisk", "azureFile", "vsphereVolume", "quobyte",
           "portworxVolume", "scaleIO", "storageos", "photonPersistentDisk", "flocker")
ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


@mutator("", "persistentvolumes")
def default_pv(req: Request) -> None:
    obj = req.obj
    assert obj is not None
    spec = obj.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    if req.operation == CREATE:
        obj["status"] = {"phase": "Pending"}
        fins = obj["metadata"].setdefault("finalizers", [])
        if "kubernetes.io/pv-protection" not in fins:  # StorageObjectInUseProtection admission plugin
            fins.append("kubernetes.io/pv-protection")


@validator("", "persistentvolumes")
def validate_pv(req: Request) -> list[FieldError]:
    obj = req.obj
    if obj is None:
        return []
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    modes = spec.get("accessModes") or []
    if not modes:
        errs.append(required("spec.accessModes"))
    for m in modes:
        if m not in ACCESS_MODES:
            errs.append(not_supported("spec.accessModes", m, ACCESS_MODES))
    cap = (spec.get("capacity") or {}).get("storage")
    if cap is None:
        errs.append(required("spec.capacity"))
    else:
        try:
            if Quantity.parse(cap).value <= 0:
                errs.append(invalid_value("spec.capacity[storage]", str(cap), "must be greater than zero"))
        except QuantityError as exc:
            errs.append(invalid_value("spec.capacity[storage]", str(cap), str(exc)))
    present = [s for s in SOURCES if spec.get(s) is not None]
    if not present:
        errs.append(required("spec", "must specify a volume type"))
    for extra in present[1:]:
        errs.append(forbidden_field(f"spec.{extra}", "may not specify more than 1 volume type"))
    if "local" in present:
        if not (spec.get("local") or {}).get("path"):
            errs.append(required("spec.local.path"))
        if not spec.get("nodeAffinity"):
            errs.append(required("spec.nodeAffinity", "Local volume requires node affinity"))
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy == "Recycle":
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, ["Delete", "Retain"]))
        errs[-1] = type(errs[-1])(errs[-1].type, errs[-1].field, errs[-1].detail + " (Recycle is deprecated; use "
                                  "Delete with dynamic provisioning, or Retain)", errs[-1].value)
    elif policy not in ("Delete", "Retain"):
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, ["Delete", "Recycle", "Retain"]))
    if spec.get("volumeMode") not in ("Filesystem", "Block"):
        errs.append(not_supported("spec.volumeMode", spec.get("volumeMode"), ["Block", "Filesystem"]))
    if req.operation == UPDATE and req.old is not None and req.subresource is None:
        old_spec = req.old.get("spec") or {}
        for src in SOURCES:
            if old_spec.get(src) != spec.get(src):
                errs.append(forbidden_field("spec.persistentvolumesource", "spec.persistentvolumesource is immutable "
                                            "after creation"))
                break
        if old_spec.get("volumeMode") != spec.get("volumeMode"):
            errs.append(invalid_value("spec.volumeMode", spec.get("volumeMode"), "field is immutable"))
        if old_spec.get("nodeAffinity") and old_spec.get("nodeAffinity") != spec.get("nodeAffinity"):
            errs.append(invalid_value("spec.nodeAffinity", "", "field is immutable"))
    return errs
