"""StorageProfiles: one per StorageClass, saying which access and volume modes suit it (R11, R12).

Upstream: CDI pkg/controller/storageprofile-controller.go and pkg/storagecapabilities. status.claimPropertySets
is the user's spec.claimPropertySets when set (each set needs accessModes and volumeMode, at most 8),
else the capabilities known for the class's provisioner, else empty (an unknown provisioner: DataVolumes
must then name their modes). The clone strategy: spec, then the class annotation
`cdi.kubevirt.io/clone-strategy`, then `snapshot` when a VolumeSnapshotClass serves the provisioner,
else `copy` (`csi-clone` only when asked for).
"""

from __future__ import annotations

import logging
from typing import Any

from ..storage import HPP_PROVISIONER, LOCAL_BLOCK_PROVISIONER, meta
from .client import STORAGEPROFILE, Client
from .runtime import Controller, EventRecorder, Informer, Key, Result, Terminal

log = logging.getLogger(__name__)

Obj = dict[str, Any]

ANN_CLONE_STRATEGY = "cdi.kubevirt.io/clone-strategy"
CLONE_STRATEGIES = ("snapshot", "copy", "csi-clone")
MAX_SETS = 8

RWO, RWX, ROX = "ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"
FS, BLOCK = "Filesystem", "Block"

# (accessMode, volumeMode) pairs per provisioner, in preference order (CDI storagecapabilities table)
CAPABILITIES: dict[str, list[tuple[str, str]]] = {
    HPP_PROVISIONER: [(RWO, FS)],
    "kubevirt.io/hostpath-provisioner": [(RWO, FS)],
    LOCAL_BLOCK_PROVISIONER: [(RWO, BLOCK)],
    "rbd.csi.ceph.com": [(RWX, BLOCK), (RWO, BLOCK), (RWO, FS)],
    "openshift-storage.rbd.csi.ceph.com": [(RWX, BLOCK), (RWO, BLOCK), (RWO, FS)],
    "cephfs.csi.ceph.com": [(RWX, FS), (RWO, FS)],
    "openshift-storage.cephfs.csi.ceph.com": [(RWX, FS), (RWO, FS)],
    "ebs.csi.aws.com": [(RWO, BLOCK)],
    "disk.csi.azure.com": [(RWO, BLOCK)],
    "pd.csi.storage.gke.io": [(RWO, BLOCK), (RWO, FS)],
    "nfs.csi.k8s.io": [(RWX, FS)],
    "topolvm.io": [(RWO, BLOCK), (RWO, FS)],
    "driver.longhorn.io": [(RWO, BLOCK)],
    "csi.vsphere.vmware.com": [(RWO, BLOCK), (RWO, FS)],
    "kubesan.gitlab.io": [(RWX, BLOCK), (ROX, BLOCK), (RWO, BLOCK), (RWO, FS)],
    "rancher.io/local-path": [(RWO, FS)],
}


def capabilities(provisioner: str) -> list[Obj]:
    return [{"accessModes": [am], "volumeMode": vm} for am, vm in CAPABILITIES.get(provisioner, [])]


def validate_sets(sets: list[Obj]) -> None:
    if len(sets) > MAX_SETS:
        raise Terminal("InvalidClaimPropertySets", f"spec.claimPropertySets: at most {MAX_SETS} sets are allowed")
    for i, s in enumerate(sets):
        if not s.get("accessModes") or not s.get("volumeMode"):
            raise Terminal("InvalidClaimPropertySets", f"spec.claimPropertySets[{i}]: must have both accessModes "
                           "and volumeMode")


def clone_strategy(profile_spec: Obj, sc: Obj, snapshot_classes: list[Obj]) -> str:
    wanted = profile_spec.get("cloneStrategy") or (meta(sc).get("annotations") or {}).get(ANN_CLONE_STRATEGY)
    has_snapshots = any(vsc.get("driver") == sc.get("provisioner") for vsc in snapshot_classes)
    if wanted in CLONE_STRATEGIES:
        return "copy" if wanted == "snapshot" and not has_snapshots else str(wanted)
    return "snapshot" if has_snapshots else "copy"


def profile_status(profile: Obj, sc: Obj, snapshot_classes: list[Obj]) -> Obj:
    spec = profile.get("spec") or {}
    sets = spec.get("claimPropertySets")
    if sets:
        validate_sets(sets)
    else:
        sets = capabilities(str(sc.get("provisioner", "")))
    status: Obj = {"storageClass": meta(sc)["name"], "provisioner": sc.get("provisioner", ""),
                   "claimPropertySets": sets, "cloneStrategy": clone_strategy(spec, sc, snapshot_classes),
                   "dataImportCronSourceFormat": spec.get("dataImportCronSourceFormat") or "pvc"}
    if not sets:
        status.pop("claimPropertySets")
    snap = spec.get("snapshotClass") or next((meta(v)["name"] for v in snapshot_classes
                                              if v.get("driver") == sc.get("provisioner")), None)
    if snap:
        status["snapshotClass"] = snap
    return status


class StorageProfileController:
    def __init__(self, client: Client, profiles: Informer, classes: Informer, snapshot_classes: Informer,
                 events: EventRecorder):
        self.client = client
        self.profiles = profiles
        self.classes = classes
        self.snapshot_classes = snapshot_classes
        self.events = events
        self.controller = Controller("storageprofile", self.reconcile)
        self.controller.watch(classes)
        self.controller.watch(profiles)
        self.controller.watch(snapshot_classes, lambda o: [("", meta(sc)["name"]) for sc in self.classes.list()])

    async def reconcile(self, key: Key) -> Result | None:
        name = key[1]
        sc = self.classes.get("", name)
        profile = self.profiles.get("", name)
        if sc is None:
            # ours go with their class; one a user made ahead of its class waits for it
            if profile is not None and (meta(profile).get("labels") or {}).get("app") == "containerized-data-importer":
                await self.client.delete(STORAGEPROFILE, name)
            return None
        if profile is None:
            profile = await self.client.create(STORAGEPROFILE, {
                "apiVersion": STORAGEPROFILE.api_version, "kind": STORAGEPROFILE.kind,
                "metadata": {"name": name, "labels": {"app": "containerized-data-importer",
                                                      "cdi.kubevirt.io": ""}},
                "spec": {}})
        try:
            status = profile_status(profile, sc, self.snapshot_classes.list())
        except Terminal as exc:
            await self.events.event(profile, "Warning", exc.reason, exc.message)
            raise
        if status != (profile.get("status") or {}):
            # a full replacement: keys that went away (e.g. claimPropertySets) must go from status too
            await self.client.patch_status(STORAGEPROFILE, name, {**{k: None for k in profile.get("status") or {}
                                                                     if k not in status}, **status})
        return None
