"""HostPathProvisioner admission: the HPP operator's webhook rules, and at most one CR per cluster.

Upstream: hostpath-provisioner-operator pkg/apis/hostpathprovisioner/v1beta1/hostpathprovisioner_webhook.go
(messages verbatim) and the controller's "there should be a single hostpath provisioner" rule, which
vdisk enforces at admission so that a second CR never exists.
"""

from __future__ import annotations

from ..errors import FieldError, cause
from . import CREATE, Request, validator


@validator("hostpathprovisioner.kubevirt.io", "hostpathprovisioners")
def validate_hpp(req: Request) -> list[FieldError]:
    obj = req.obj
    if obj is None:
        return []
    errs: list[FieldError] = []
    if req.operation == CREATE:
        others = [o["metadata"]["name"] for o in req.lookup.list("hostpathprovisioner.kubevirt.io",
                                                                   "hostpathprovisioners")]
        if others:
            errs.append(cause("metadata.name", f"there should be a single hostpath provisioner, {len(others) + 1} "
                              f"items found (existing: {', '.join(others)})", "FieldValueForbidden"))
    spec = obj.get("spec") or {}
    pools = spec.get("storagePools") or []
    path_config = spec.get("pathConfig")
    if path_config and pools:
        errs.append(cause("spec", "pathConfig and storage pools cannot be both set"))
    elif not path_config and not pools:
        errs.append(cause("spec", "either pathConfig or storage pools must be set"))
    if path_config is not None and not path_config.get("path"):
        errs.append(cause("spec.pathConfig.path", "pathconfig path must be set"))
    names: dict[str, int] = {}
    paths: dict[str, int] = {}
    for i, pool in enumerate(pools):
        name = pool.get("name") or ""
        path = pool.get("path") or ""
        if not name:
            errs.append(cause(f"spec.storagePools[{i}].name", "storagePool.name cannot be blank"))
        elif len(name) > 50:
            errs.append(cause(f"spec.storagePools[{i}].name", "storagePool.name cannot have a length greater than 50"))
        if not path:
            errs.append(cause(f"spec.storagePools[{i}].path", "storagePool.path cannot be blank"))
        elif len(path) > 255:
            errs.append(cause(f"spec.storagePools[{i}].path", "storagePool.path cannot have a length greater than 255"))
        if path and path in paths:
            errs.append(cause(f"spec.storagePools[{i}].path", f"spec.storagePools[{i}].path is the same as "
                              f"spec.storagePools[{paths[path]}].path, cannot have duplicate paths"))
        if name and name in names:
            errs.append(cause(f"spec.storagePools[{i}].name", f"spec.storagePools[{i}].name is the same as "
                              f"spec.storagePools[{names[name]}].name, cannot have duplicate names"))
        names.setdefault(name, i)
        paths.setdefault(path, i)
    return errs
