"""Rendering a DataVolume's PVC: modes from the StorageProfile, size with the filesystem overhead (R8-R11, R13).

Upstream: CDI pkg/controller/datavolume/util.go (renderPvcSpec, renderPvcSpecVolumeModeAndAccessModes-
AndStorageClass, renderPvcSpecVolumeSize), controller-base.go (newPersistentVolumeClaim) and
pkg/controller/common/util.go (UpdateHTTPAnnotations, UpdateRegistryAnnotations, GetDefaultStorageClass).
Pure functions: the controller passes what its informers hold.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .. import cdi
from ..quantity import Quantity, QuantityError
from ..storage import meta

Obj = dict[str, Any]

ANN_DEFAULT_VIRT_CLASS = "storageclass.kubevirt.io/is-default-virt-class"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_DEFAULT_CLASS_BETA = "storageclass.beta.kubernetes.io/is-default-class"
# what is not copied from the DataVolume to its PVC (kubectl's bookkeeping)
SKIP_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
# what the controllers write on a claim: copied from a DV they would fake a finished import
CONTROLLER_OWNED = (cdi.ANN_POPULATED_FOR, cdi.ANN_POD_PHASE, cdi.ANN_POD_READY, cdi.ANN_POD_RESTARTS,
                    cdi.ANN_POD_SCHEDULABLE, cdi.PREFIX + "storage.condition.",
                    cdi.ANN_FATAL_ERROR, cdi.ANN_REQUIRES_SCRATCH, cdi.ANN_IMPORT_POD, cdi.ANN_UPLOAD_POD)


class RenderError(Exception):
    """The PVC cannot be rendered: Bound=False with `reason`, a Warning event, and maybe a retry."""

    def __init__(self, reason: str, message: str, event: str | None = None, retry: bool = False):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.event = event or message
        self.retry = retry


@dataclass(frozen=True)
class Cluster:
    """What rendering needs to know about the cluster."""

    classes: dict[str, Obj]
    profiles: dict[str, Obj]
    config: Obj  # CDIConfig (spec + status)


def source_kind(dv: Obj) -> str:
    src = (dv.get("spec") or {}).get("source") or {}
    if src:
        return next(iter(src))
    if (dv.get("spec") or {}).get("sourceRef"):
        return "sourceRef"
    return ""


def default_class(classes: dict[str, Obj], virt: bool) -> str:
    def newest(pred: Any) -> str:
        found = sorted((sc for sc in classes.values() if pred(meta(sc).get("annotations") or {})),
                       key=lambda sc: (meta(sc).get("creationTimestamp", ""), meta(sc)["name"]), reverse=True)
        return str(meta(found[0])["name"]) if found else ""

    if virt:
        name = newest(lambda a: a.get(ANN_DEFAULT_VIRT_CLASS) == "true")
        if name:
            return name
    return newest(lambda a: a.get(ANN_DEFAULT_CLASS) == "true" or a.get(ANN_DEFAULT_CLASS_BETA) == "true")


def overhead_for(config: Obj, class_name: str, volume_mode: str | None) -> float:
    """CDI GetFilesystemOverheadForStorageClass: 0 for Block and for no class; per class, else global."""
    if volume_mode == "Block" or not class_name:
        return 0.0
    fo = (config.get("status") or {}).get("filesystemOverhead") or {}
    value = (fo.get("storageClass") or {}).get(class_name) or fo.get("global") or cdi.DEFAULT_OVERHEAD
    try:
        return float(value)
    except (TypeError, ValueError):
        return cdi.DEFAULT_OVERHEAD


def preallocation(dv: Obj, config: Obj) -> bool:
    spec = dv.get("spec") or {}
    if spec.get("preallocation") is not None:
        return bool(spec["preallocation"])
    return bool((config.get("status") or {}).get("preallocation", False))


def _modes_from_profile(spec: Obj, profile: Obj | None, class_name: str) -> None:
    """Fill accessModes/volumeMode in `spec` from the profile's first suitable claim property set."""
    sets = ((profile or {}).get("status") or {}).get("claimPropertySets") or []
    access, mode = spec.get("accessModes"), spec.get("volumeMode")
    if mode == "FromStorageProfile":
        mode = None
        spec.pop("volumeMode", None)
    if access and mode:
        return
    if not access and not mode:
        if not sets:
            raise RenderError("ErrClaimNotValid", f"no accessMode specified in StorageProfile {class_name}",
                              event="Spec is missing accessMode and volumeMode, cannot get access mode from "
                                    f"StorageProfile {class_name}", retry=False)
        first = sets[0]
        spec["accessModes"] = list(first.get("accessModes") or [])
        if first.get("volumeMode"):
            spec["volumeMode"] = first["volumeMode"]
        return
    if mode and not access:
        for s in sets:
            if s.get("volumeMode") == mode and s.get("accessModes"):
                spec["accessModes"] = list(s["accessModes"])
                return
        raise RenderError("ErrClaimNotValid", f"no matching accessMode specified in StorageProfile {class_name}",
                          event=f"Spec is missing accessMode and cannot get access mode from StorageProfile "
                                f"{class_name} for volumeMode {mode}")
    for s in sets:  # accessModes only: the volume mode of the first set offering one of them
        if set(s.get("accessModes") or []) & set(access or []) and s.get("volumeMode"):
            spec["volumeMode"] = s["volumeMode"]
            return


def render_pvc_spec(dv: Obj, cluster: Cluster) -> Obj:
    """The PVC spec for a DataVolume; raises RenderError with CDI's reasons and messages."""
    spec = dv.get("spec") or {}
    content = spec.get("contentType") or cdi.CONTENT_KUBEVIRT
    if "pvc" in spec and spec["pvc"] is not None:
        pvc = copy.deepcopy(spec["pvc"])  # the PVC API: used as given, no overhead (R9)
        if content == cdi.CONTENT_ARCHIVE and pvc.get("volumeMode") == "Block":
            raise RenderError("ErrClaimNotValid", "ContentType Archive cannot have block volumeMode")
        return pvc
    storage = copy.deepcopy(spec.get("storage") or {})
    class_name = storage.get("storageClassName")
    if class_name is None:
        class_name = default_class(cluster.classes, virt=content == cdi.CONTENT_KUBEVIRT)
        if class_name:
            storage["storageClassName"] = class_name
    if content == cdi.CONTENT_ARCHIVE:
        if storage.get("volumeMode") == "Block":
            raise RenderError("ErrClaimNotValid", "ContentType Archive cannot have block volumeMode")
        storage["volumeMode"] = "Filesystem"
    if not class_name:
        if not storage.get("accessModes"):
            raise RenderError("ErrClaimNotValid", "PVC spec is missing accessMode and no storageClass to choose "
                              "profile")
    elif class_name not in cluster.classes:
        if not storage.get("accessModes"):
            raise RenderError("ErrClaimNotValid", f'storageclass.storage.k8s.io "{class_name}" not found',
                              retry=True)
    else:
        profile = cluster.profiles.get(class_name)
        if profile is None and not (storage.get("accessModes") and storage.get("volumeMode")):
            raise RenderError("Pending", f"waiting for the StorageProfile of {class_name}", retry=True)
        _modes_from_profile(storage, profile, class_name)
    if storage.get("volumeMode") == "FromStorageProfile":
        storage.pop("volumeMode")
    resources = storage.setdefault("resources", {})
    requests = resources.setdefault("requests", {})
    raw = requests.get("storage")
    if raw is None:
        if source_kind(dv) not in ("pvc", "snapshot", "sourceRef"):
            raise RenderError("ErrClaimNotValid", "missing storage size")
    else:
        try:
            size = Quantity.parse(str(raw)).bytes
        except QuantityError as exc:
            raise RenderError("ErrClaimNotValid", f"invalid storage size {raw!r}: {exc}") from exc
        if size < cdi.MIB:
            raise RenderError("ErrClaimNotValid", "PVC Spec is not valid - storage size should be at least 1MiB")
        overhead = overhead_for(cluster.config, class_name or "", storage.get("volumeMode") or "Filesystem")
        if overhead:
            requests["storage"] = str(cdi.required_space(overhead, int(size)))
    return storage


def source_annotations(dv: Obj, insecure_registries: list[str]) -> dict[str, str]:
    """The import annotations a PVC carries for the worker-pod controller (CDI UpdateHTTPAnnotations etc.)."""
    src = (dv.get("spec") or {}).get("source") or {}
    ann: dict[str, str] = {}
    if "http" in src:
        h = src["http"] or {}
        ann[cdi.ANN_SOURCE] = cdi.SOURCE_HTTP
        ann[cdi.ANN_ENDPOINT] = h.get("url", "")
        if h.get("secretRef"):
            ann[cdi.ANN_SECRET] = h["secretRef"]
        if h.get("certConfigMap"):
            ann[cdi.ANN_CERT_CONFIGMAP] = h["certConfigMap"]
        for i, header in enumerate(h.get("extraHeaders") or []):
            ann[f"{cdi.ANN_EXTRA_HEADERS}.{i}"] = header
        for i, secret in enumerate(h.get("secretExtraHeaders") or []):
            ann[f"{cdi.ANN_SECRET_EXTRA_HEADERS}.{i}"] = secret
        if h.get("checksum"):
            ann[cdi.ANN_CHECKSUM] = h["checksum"]
        if h.get("insecureSkipVerify"):
            ann[cdi.ANN_INSECURE] = "true"
    elif "registry" in src:
        r = src["registry"] or {}
        ann[cdi.ANN_SOURCE] = cdi.SOURCE_REGISTRY
        url = r.get("url") or ""
        ann[cdi.ANN_ENDPOINT] = url
        if r.get("secretRef"):
            ann[cdi.ANN_SECRET] = r["secretRef"]
        if r.get("certConfigMap"):
            ann[cdi.ANN_CERT_CONFIGMAP] = r["certConfigMap"]
        ann[cdi.ANN_REGISTRY_METHOD] = r.get("pullMethod") or "pod"
        host = url.removeprefix("docker://").split("/", 1)[0]
        if host and (host in insecure_registries or host.split(":")[0] in insecure_registries):
            ann[cdi.ANN_INSECURE] = "true"
    elif "blank" in src:
        ann[cdi.ANN_SOURCE] = cdi.SOURCE_NONE
    elif "upload" in src:
        ann[cdi.ANN_UPLOAD_TARGET] = ""
    return ann


def new_pvc(dv: Obj, spec: Obj, cluster: Cluster) -> Obj:
    """The PVC object: the DV's labels and annotations, CDI's hand-over annotations, owned by the DV."""
    m = meta(dv)
    dv_spec = dv.get("spec") or {}
    ann = {k: v for k, v in (m.get("annotations") or {}).items()
           if k not in SKIP_ANNOTATIONS and not k.startswith(CONTROLLER_OWNED)}
    insecure = list(((cluster.config.get("spec") or {}).get("insecureRegistries")) or [])
    ann.update(source_annotations(dv, insecure))
    ann[cdi.ANN_CONTENT_TYPE] = dv_spec.get("contentType") or cdi.CONTENT_KUBEVIRT
    ann[cdi.ANN_POD_RESTARTS] = "0"
    ann[cdi.ANN_CREATED_FOR_DV] = m.get("uid", "")
    ann[cdi.ANN_PREALLOCATION_REQUESTED] = "true" if preallocation(dv, cluster.config) else "false"
    if dv_spec.get("priorityClassName"):
        ann[cdi.ANN_PRIORITY_CLASS] = dv_spec["priorityClassName"]
    if dv_spec.get("serviceAccountName"):
        ann[cdi.ANN_SERVICE_ACCOUNT] = dv_spec["serviceAccountName"]
    labels = {**(m.get("labels") or {}), cdi.LABEL_APP: cdi.APP}
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": m["name"], "namespace": m.get("namespace"), "labels": labels, "annotations": ann,
                     "ownerReferences": [{"apiVersion": dv.get("apiVersion", "cdi.kubevirt.io/v1beta1"),
                                          "kind": "DataVolume", "name": m["name"], "uid": m.get("uid", ""),
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": spec,
    }
