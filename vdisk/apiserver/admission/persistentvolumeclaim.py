"""PersistentVolumeClaim: defaults, the DefaultStorageClass plugin, and update rules (never shrink).

Upstream: k8s pkg/apis/core/validation/validation.go (ValidatePersistentVolumeClaim[Update], messages
verbatim), pkg/registry/core/persistentvolumeclaim/strategy.go, and the DefaultStorageClass admission
plugin (plugin/pkg/admission/storage/storageclass/setdefault).
"""

from __future__ import annotations

from typing import Any

from ...cdi import LABEL_APPLY_PROFILE
from ...quantity import Quantity, QuantityError
from .. import errors
from ..errors import FieldError, forbidden_field, invalid_value, not_supported, required
from ..printers import is_default_class
from . import CREATE, UPDATE, Request, mutator, validator

Obj = dict[str, Any]

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def default_storage_class(req: Request) -> str | None:
    """The newest StorageClass annotated as default (then by name), as the DefaultStorageClass plugin picks."""
    defaults = [sc for sc in req.lookup.list("storage.k8s.io", "storageclasses") if is_default_class(sc)]
    if not defaults:
        return None
    defaults.sort(key=lambda sc: (sc["metadata"].get("creationTimestamp", ""), sc["metadata"]["name"]), reverse=True)
    return str(defaults[0]["metadata"]["name"])




@mutator("", "persistentvolumeclaims")
def render_from_storage_profile(req: Request) -> None:
    """CDI's PVC mutating webhook (WebhookPvcRendering, on by default): a claim labelled
    cdi.kubevirt.io/applyStorageProfile=true gets what the DataVolume storage API would give it: the
    class's access and volume modes (volumeMode FromStorageProfile or none) and the filesystem overhead."""
    obj = req.obj
    if req.operation != CREATE or obj is None or \
            (obj["metadata"].get("labels") or {}).get(LABEL_APPLY_PROFILE) != "true":
        return
    if any(o.get("kind") == "DataVolume" for o in obj["metadata"].get("ownerReferences") or []):
        return  # a DataVolume's claim is rendered already (a label copied from the DV must not add twice)
    from ...controllers.dvrender import (  # pure: shared with the DV controller
        Cluster,
        RenderError,
        render_pvc_spec,
    )

    classes = {sc["metadata"]["name"]: sc for sc in req.lookup.list("storage.k8s.io", "storageclasses")}
    profiles = {p["metadata"]["name"]: p for p in req.lookup.list("cdi.kubevirt.io", "storageprofiles")}
    config = req.lookup.get("cdi.kubevirt.io", "cdiconfigs", "", "config") or {}
    content = (obj["metadata"].get("annotations") or {}).get("cdi.kubevirt.io/storage.contentType") or "kubevirt"
    spec = obj.setdefault("spec", {})
    try:
        rendered = render_pvc_spec({"spec": {"storage": spec, "contentType": content, "source": {"upload": {}}}},
                                   Cluster(classes, profiles, config))
    except RenderError as exc:
        raise errors.invalid("PersistentVolumeClaim", "", req.name,
                             [invalid_value("spec", "", f"{exc.message} (rendering from the StorageProfile)")]
                             ) from None
    obj["spec"] = rendered


@mutator("", "persistentvolumeclaims")
def default_pvc(req: Request) -> None:
    obj = req.obj
    assert obj is not None
    spec = obj.setdefault("spec", {})
    if req.operation == CREATE:
        spec.setdefault("volumeMode", "Filesystem")
        obj["status"] = {"phase": "Pending"}
        # StorageObjectInUseProtection admission plugin
        fins = obj["metadata"].setdefault("finalizers", [])
        if "kubernetes.io/pvc-protection" not in fins:
            fins.append("kubernetes.io/pvc-protection")
        if "storageClassName" not in spec:
            name = default_storage_class(req)
            if name:
                spec["storageClassName"] = name


def _storage(spec: Obj) -> Any:
    return ((spec.get("resources") or {}).get("requests") or {}).get("storage")


@validator("", "persistentvolumeclaims")
def validate_pvc(req: Request) -> list[FieldError]:
    obj = req.obj
    if obj is None:
        return []
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    modes = spec.get("accessModes") or []
    if not modes and not spec.get("dataSourceRef"):
        errs.append(required("spec.accessModes", "at least 1 access mode is required"))
    for m in modes:
        if m not in ACCESS_MODES:
            errs.append(not_supported("spec.accessModes", m, ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.append(forbidden_field("spec.accessModes", "may not use ReadWriteOncePod with other access modes"))
    if spec.get("volumeMode") not in (None, "Filesystem", "Block"):
        errs.append(not_supported("spec.volumeMode", spec.get("volumeMode"), ["Block", "Filesystem"]))
    size = _storage(spec)
    if size is None:
        errs.append(required("spec.resources[storage]"))
    else:
        try:
            if Quantity.parse(size).value <= 0:
                errs.append(invalid_value("spec.resources[storage]", str(size), "must be greater than zero"))
        except QuantityError as exc:
            errs.append(invalid_value("spec.resources.requests[storage]", str(size), str(exc)))
    if req.operation == UPDATE and req.old is not None and req.subresource is None and not errs:
        errs += _validate_update(spec, req.old)
        if not errs:
            _check_resize(req, spec, req.old)
    return errs


def _check_resize(req: Request, spec: Obj, old: Obj) -> None:
    """PersistentVolumeClaimResize admission plugin (plugin/pkg/admission/storage/persistentvolume/resize)."""
    try:
        grows = Quantity.parse(_storage(spec)).value > Quantity.parse(_storage(old.get("spec") or {})).value
    except (QuantityError, TypeError):
        return
    if not grows:
        return
    cls = (old.get("spec") or {}).get("storageClassName") or ""
    sc = req.lookup.get("storage.k8s.io", "storageclasses", "", cls) if cls else None
    pv_name = (old.get("spec") or {}).get("volumeName")
    pv = req.lookup.get("", "persistentvolumes", "", pv_name) if pv_name else None
    if sc is None or not sc.get("allowVolumeExpansion") or pv is None or \
            (pv.get("spec") or {}).get("storageClassName") != cls:
        raise errors.forbidden("", "persistentvolumeclaims", req.name, "only dynamically provisioned pvc can be "
                               "resized and the storageclass that provisions the pvc must support resize")


def _validate_update(spec: Obj, old: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    old_spec = old.get("spec") or {}
    bound = (old.get("status") or {}).get("phase") == "Bound"
    new_c, old_c = dict(spec), dict(old_spec)
    if not old_spec.get("volumeName"):
        old_c.pop("volumeName", None)  # binding sets volumeName once
        new_c.pop("volumeName", None)
    for c in (new_c, old_c):
        c.pop("volumeAttributesClassName", None)
    if bound:
        new_c["resources"] = old_c.get("resources")
    old_c.setdefault("volumeMode", "Filesystem")
    new_c.setdefault("volumeMode", "Filesystem")
    if new_c != old_c:
        errs.append(forbidden_field("spec", "spec is immutable after creation except resources.requests and "
                                    "volumeAttributesClassName for bound claims"))
    try:
        if Quantity.parse(_storage(spec)).value < Quantity.parse(_storage(old_spec)).value:
            errs.append(forbidden_field("spec.resources.requests.storage", "field can not be less than previous "
                                        "value"))
    except (QuantityError, TypeError):
        pass
    return errs
