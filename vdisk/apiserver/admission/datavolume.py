"""DataVolume admission (CDI's datavolume-validate webhook): sources, pvc/storage, sizes, immutable spec.

Upstream: containerized-data-importer pkg/apiserver/webhooks/datavolume-validate.go; messages as there.
Deliberate difference: a missing clone source PVC is accepted (the DV waits with CloneWithoutSource, as
current CDI does). The seed's example 11 has a URL without a scheme and is refused here, naming the
field, as CDI's webhook refuses it.
"""

from __future__ import annotations

from typing import Any

from ...cdi import parse_checksum
from ...quantity import Quantity, QuantityError
from ..errors import FieldError, cause
from . import CREATE, UPDATE, Request, validator

Obj = dict[str, Any]

SOURCES = ("http", "s3", "gcs", "registry", "pvc", "upload", "blank", "imageio", "vddk", "snapshot")
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
MIB = 1024 * 1024
ANN_POPULATED_FOR = "cdi.kubevirt.io/storage.populatedFor"
ANN_ALLOW_ADOPTION = "cdi.kubevirt.io/allowClaimAdoption"


def _size_cause(resources: Obj | None, name: str, *, optional: bool) -> FieldError | None:
    path = f"spec.{name.lower()}.resources.requests.storage"
    storage = ((resources or {}).get("requests") or {}).get("storage")
    if storage is None:
        return None if optional else cause(path, f"{name} size is missing")
    try:
        q = Quantity.parse(storage)
    except QuantityError:
        return cause(path, f"{name} size is not a valid quantity: {storage}")
    if q.value <= 0:
        return cause(path, f"{name} size can't be equal or less than zero")
    if q.value < MIB:
        return cause(path, f"{name} size should be at least 1MiB")
    return None


def _url_problem(url: str, kind: str) -> str:
    """CDI's validateSourceURL: empty, unparsable, or a scheme the importer cannot use."""
    from urllib.parse import urlsplit

    if not url:
        return "source URL is empty"
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"Invalid source URL: {url}"
    if not parts.scheme or not (parts.netloc or parts.path.startswith("/")):
        return f"Invalid source URL: {url}"
    allowed = ("http", "https", "gs") if kind == "http" else ("http", "https")
    if parts.scheme not in allowed:
        return f"Invalid source URL scheme: {url}"
    return ""


def _spec_causes(spec: Obj, req: Request) -> list[FieldError]:
    pvc: Obj | None = spec.get("pvc")
    storage: Obj = spec.get("storage") or {}
    if spec.get("storage") is None:
        storage_set = False
    else:
        storage_set = True
    source: Obj | None = spec.get("source")
    source_ref: Obj | None = spec.get("sourceRef")
    if pvc is None and not storage_set:
        return [cause("spec.pvc", "Missing Data volume PVC")]
    if pvc is not None and storage_set:
        return [cause("spec.pvc", "Duplicate storage definition, both target storage and target pvc defined")]
    is_clone = isinstance(source, dict) and ("pvc" in source or "snapshot" in source) or source_ref is not None
    if pvc is not None:
        c = _size_cause(pvc.get("resources"), "PVC", optional=False)
        if c:
            return [c]
        modes = pvc.get("accessModes") or []
        if not modes:
            return [cause("spec.pvc.accessModes", "Required value: at least 1 access mode is required")]
        if len(modes) > 1:
            return [cause("spec.pvc.accessModes", "PVC multiple accessModes")]
        if modes[0] not in ACCESS_MODES:
            return [cause("spec.pvc.accessModes", f'Unsupported value: "{modes[0]}": supported values: '
                          '"ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"')]
    else:
        c = _size_cause(storage.get("resources"), "Storage", optional=is_clone)
        if c:
            return [c]
        for mode in storage.get("accessModes") or []:
            if mode not in ACCESS_MODES:
                return [cause("spec.storage.accessModes", f'Unsupported value: "{mode}": supported values: '
                              '"ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"')]
    if (source is None) == (source_ref is None):
        return [cause("spec.source", "Data volume should have either Source or SourceRef, or be externally populated")]
    if source_ref is not None:
        if not source_ref.get("kind"):
            return [cause("spec.sourceRef.kind", "Missing sourceRef kind")]
        if source_ref["kind"] != "DataSource":
            return [cause("spec.sourceRef.kind", f"Unsupported sourceRef kind {source_ref['kind']}, currently only "
                          "DataSource is supported")]
        if not source_ref.get("name"):
            return [cause("spec.sourceRef.name", "Missing sourceRef name")]
        return []
    assert source is not None
    present = [s for s in SOURCES if isinstance(source, dict) and source.get(s) is not None]
    if not present:
        return [cause("spec.source", "Missing Data volume source")]
    if len(present) > 1:
        return [cause("spec.source", "Multiple Data volume sources")]
    content_type = spec.get("contentType") or ""
    if content_type not in ("", "kubevirt", "archive"):
        return [cause("spec.contentType", "ContentType not one of: kubevirt, archive")]
    kind = present[0]
    if kind == "blank" and content_type == "archive":
        return [cause("spec.contentType", "SourceType cannot be blank and the contentType be archive")]
    if kind == "registry":
        if content_type not in ("", "kubevirt"):
            return [cause("spec.contentType", "ContentType must be kubevirt when Source is Registry")]
        reg = source["registry"]
        if bool(reg.get("url")) == bool(reg.get("imageStream")):
            return [cause("spec.source.registry", "Source registry should have either URL or ImageStream")]
        url = reg.get("url") or ""
        if url and not (url.startswith("docker://") or url.startswith("oci-archive://")):
            return [cause("spec.source.registry.url", f"Illegal registry source URL scheme {url}")]
        if reg.get("imageStream") and reg.get("pullMethod") != "node":
            return [cause("spec.source.registry.pullMethod", "ImageStream is only supported with node pull import "
                          "method")]
    if kind in ("http", "s3", "imageio", "vddk"):
        problem = _url_problem(str((source[kind] or {}).get("url") or ""), kind)
        if problem:
            return [cause(f"spec.source.{kind}.url", f"spec.source {problem}")]
    if kind == "http" and (source["http"] or {}).get("checksum"):
        try:
            parse_checksum(str(source["http"]["checksum"]))
        except ValueError as exc:
            return [cause("spec.source.http.checksum", str(exc))]
    if kind in ("pvc", "snapshot") and not (source[kind] or {}).get("name"):
        path = "spec.source.PVC" if kind == "pvc" else "spec.source.Snapshot"  # CDI's field paths, verbatim
        return [cause(path, f"{path} source {'PVC' if kind == 'pvc' else 'snapshot'} is not valid")]
    if kind == "imageio":
        io = source["imageio"]
        if not io.get("secretRef") or not io.get("diskId") or not (io.get("certConfigMap") or
                                                                     io.get("insecureSkipVerify")):
            return [cause("spec.source.imageio", "spec.source.imageio source Imageio is not valid")]
    if kind == "vddk":
        v = source["vddk"]
        if not all(v.get(k) for k in ("secretRef", "uuid", "backingFile", "thumbprint")):
            return [cause("spec.source.vddk", "spec.source.vddk source VDDK is not valid")]
    if kind == "pvc" and req.operation == CREATE:
        return _clone_source_causes(spec, req)
    return []


def _clone_source_causes(spec: Obj, req: Request) -> list[FieldError]:
    src = spec["source"]["pvc"]
    ns = src.get("namespace") or req.namespace
    source_pvc = req.lookup.get("", "persistentvolumeclaims", ns, src["name"])
    if source_pvc is None:
        return []  # the DataVolume waits for its source (event CloneWithoutSource)
    src_ct = (source_pvc["metadata"].get("annotations") or {}).get("cdi.kubevirt.io/storage.contentType") or "kubevirt"
    tgt_ct = spec.get("contentType") or "kubevirt"
    if src_ct != tgt_ct:
        return [cause("spec.source.pvc", f"Source contentType ({src_ct}) and target contentType ({tgt_ct}) do not "
                      "match")]
    target = spec.get("pvc") or spec.get("storage") or {}
    tgt_size = ((target.get("resources") or {}).get("requests") or {}).get("storage")
    src_size = (((source_pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    if tgt_size and src_size:
        t, s = Quantity.parse(tgt_size).bytes, Quantity.parse(src_size).bytes
        if t < s:
            return [cause("spec.source.pvc", f"target resources requests storage size is smaller than the source "
                          f"{t} < {s}")]
    return []


@validator("cdi.kubevirt.io", "datavolumes")
def validate_datavolume(req: Request) -> list[FieldError]:
    obj = req.obj
    if obj is None:
        return []
    spec = obj.get("spec") or {}
    if req.operation == UPDATE and req.old is not None and req.subresource is None:
        old_spec = req.old.get("spec") or {}
        strip = ("checkpoints", "finalCheckpoint")
        if {k: v for k, v in spec.items() if k not in strip} != {k: v for k, v in old_spec.items() if k not in strip}:
            return [cause("DataVolume.Spec", "Cannot update DataVolume Spec", "FieldValueDuplicate")]
        return []
    if req.operation != CREATE:
        return []
    errs = _spec_causes(spec, req)
    if errs:
        return errs
    pvc = req.lookup.get("", "persistentvolumeclaims", req.namespace, req.name)
    if pvc is not None:
        ann = pvc["metadata"].get("annotations") or {}
        owner = next((r for r in pvc["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        adopt = (obj["metadata"].get("annotations") or {}).get(ANN_ALLOW_ADOPTION) == "true"
        if ann.get(ANN_POPULATED_FOR) != req.name and not adopt and (owner is None or owner.get("kind") != "DataVolume"):
            return [cause("DataVolume.Name", f"Destination PVC {req.namespace}/{req.name} already exists",
                          "FieldValueDuplicate")]
    return []
