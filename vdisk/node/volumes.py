"""Volumes on this node: provisioning, deletion, expansion, and finding a PV's path or device.

The node-side half of the HPP CSI driver and external-provisioner/resizer sidecars
(HPP pkg/hostpath/controllerserver.go CreateVolume/DeleteVolume; kubernetes-csi external-provisioner
and external-resizer): a claim whose `volume.kubernetes.io/selected-node` names this node gets a
volume directory (and, for Block, a sparse file on a loop device) and a PV pre-bound to it; a released
PV with reclaim policy Delete has its data removed and is deleted; a grown request grows the volume.

Beyond upstream HPP: Block volumes (sparse file + loop device), per-node capacity accounting (a claim
that does not fit is refused with an event instead of silently over-committing), PV capacity equal to
the request (HPP reports the whole pool), and expansion.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..cdi import usable_space
from ..quantity import format_bytes
from ..storage import (
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    HPP_PROVISIONER,
    LOCAL_BLOCK_POOL,
    LOCAL_BLOCK_PROVISIONER,
    OUR_PROVISIONERS,
    PROVISIONER_FINALIZER,
    PV_PROTECTION,
    TOPOLOGY_KEY,
    annotations_of,
    claim_class,
    claim_request,
    meta,
    pool_of_class,
    pv_node,
    volume_capacity,
    volume_mode,
)
from . import host
from .pools import BLOCK_IMAGE, Pool

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MIB = 1024 * 1024
DISK_IMAGE = "disk.img"


def pv_name_for(pvc: Obj) -> str:
    return f"pvc-{meta(pvc)['uid']}"


def pv_pool(pv: Obj) -> str | None:
    """The pool a PV we provisioned lives in."""
    spec = pv.get("spec") or {}
    if (spec.get("csi") or {}).get("driver") == HPP_PROVISIONER:
        return str(((spec["csi"].get("volumeAttributes") or {}).get("storagePool")) or "legacy")
    if annotations_of(pv).get(ANN_PROVISIONED_BY) == LOCAL_BLOCK_PROVISIONER:
        return LOCAL_BLOCK_POOL
    return None


def desired_pv(pvc: Obj, sc: Obj, node: str, pool: Pool, host_path: str | None) -> Obj:
    name = pv_name_for(pvc)
    spec = pvc.get("spec") or {}
    size = claim_request(pvc)
    pv_spec: Obj = {
        "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
        "capacity": {"storage": format_bytes(size)},
        "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta(pvc)["namespace"],
                     "name": meta(pvc)["name"], "uid": meta(pvc)["uid"],
                     "resourceVersion": meta(pvc).get("resourceVersion", "")},
        "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
        "storageClassName": meta(sc)["name"],
        "volumeMode": volume_mode(pvc),
    }
    provisioner = sc.get("provisioner")
    if provisioner == LOCAL_BLOCK_PROVISIONER:
        pv_spec["local"] = {"path": host_path}
        pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    else:
        pv_spec["csi"] = {"driver": HPP_PROVISIONER, "volumeHandle": name,
                          "volumeAttributes": {**(sc.get("parameters") or {}), "storagePool": pool.name,
                                               "storage.kubernetes.io/csiProvisionerIdentity": f"vdisk-{node}"}}
        if volume_mode(pvc) == "Filesystem":
            pv_spec["csi"]["fsType"] = "xfs"
        pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": TOPOLOGY_KEY, "operator": "In", "values": [node]}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {ANN_PROVISIONED_BY: provisioner,
                                                       "volume.kubernetes.io/provisioner-deletion-secret-name": "",
                                                       "volume.kubernetes.io/provisioner-deletion-secret-namespace": ""},
                         "finalizers": [PV_PROTECTION, PROVISIONER_FINALIZER]},
            "spec": pv_spec}


def claim_wants_us(pvc: Obj, node: str) -> bool:
    ann = annotations_of(pvc)
    return (ann.get(ANN_SELECTED_NODE) == node and ann.get(ANN_STORAGE_PROVISIONER) in OUR_PROVISIONERS
            and not (pvc.get("spec") or {}).get("volumeName") and not meta(pvc).get("deletionTimestamp"))


class VolumeStore:
    """File operations on this node's volumes (no API calls)."""

    def __init__(self, pools: dict[str, Pool], host_root: Path):
        self.pools = pools
        self.host_root = host_root

    def host_path(self, path: str) -> Path:
        """A host path as this process sees it (below the node's host root)."""
        return self.host_root / path.lstrip("/")

    def as_host_path(self, real: Path) -> str:
        """The inverse of host_path, for paths written into PVs."""
        # resolve the directories but not the last component: a Block volume's `device` is a symlink
        rel = (real.parent.resolve() / real.name).relative_to(self.host_root.resolve())
        return "/" + str(rel)

    async def create(self, pool: Pool, pv_name: str, mode: str, size: int) -> Path:
        vdir = pool.volume_dir(pv_name)
        vdir.mkdir(parents=True, exist_ok=True)
        vdir.chmod(0o777)  # HPP creates volume dirs 0777 so any pod user can write
        if mode == "Block":
            image = vdir / BLOCK_IMAGE
            host.create_sparse_file(image, size)
            dev = await host.attach_loop(image)
            link = vdir / "device"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(dev)
        return vdir

    async def delete(self, pool: Pool, pv_name: str) -> None:
        vdir = pool.volume_dir(pv_name)
        image = vdir / BLOCK_IMAGE
        if image.exists():
            await host.detach_loop(image)
        host.remove_tree(vdir)

    async def expand(self, pool: Pool, pv_name: str, mode: str, size: int, overhead: float) -> None:
        vdir = pool.volume_dir(pv_name)
        if mode == "Block":
            image = vdir / BLOCK_IMAGE
            host.grow_file(image, size)
            await host.refresh_loop(image)
            return
        disk = vdir / DISK_IMAGE
        if disk.exists():
            host.grow_file(disk, usable_space(overhead, size))

    async def device(self, pool: Pool, pv_name: str) -> str:
        """The block device of a Block volume, attaching its loop device if needed (after a restart)."""
        vdir = pool.volume_dir(pv_name)
        dev = await host.attach_loop(vdir / BLOCK_IMAGE)
        link = vdir / "device"
        if not (link.is_symlink() and str(link.readlink()) == dev):
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(dev)
        return dev

    async def resolve(self, pv: Obj) -> tuple[str, str]:
        """(kind, path) of a PV on this node: ("dir", path) for Filesystem, ("block", device) for Block."""
        spec = pv.get("spec") or {}
        mode = volume_mode(pv)
        pool_name = pv_pool(pv)
        if pool_name is not None:
            pool = self.pools.get(pool_name)
            if pool is None:
                raise LookupError(f"storage pool {pool_name} is not available on this node")
            if mode == "Block":
                return "block", await self.device(pool, meta(pv)["name"])
            return "dir", str(pool.volume_dir(meta(pv)["name"]))
        for src in ("local", "hostPath"):
            if spec.get(src):
                path = self.host_path(spec[src]["path"])
                if mode == "Block":
                    return "block", str(path.resolve())
                return "dir", str(path)
        raise LookupError(f"persistent volume {meta(pv)['name']} has no volume source this node can use")


def provisioning_problem(pvc: Obj, sc: Obj | None, pools: dict[str, Pool]) -> str:
    """Why this node cannot provision the claim, or ""."""
    if sc is None:
        return f'storageclass.storage.k8s.io "{claim_class(pvc)}" not found'
    pool_name = pool_of_class(sc)
    pool = pools.get(pool_name)
    if pool is None:
        return f"unable to locate path for storage pool {pool_name}"
    state = pool.state()
    if not state.ready:
        return f"storage pool {pool_name} is not ready: {state.message}"
    if sc.get("provisioner") == LOCAL_BLOCK_PROVISIONER and volume_mode(pvc) != "Block":
        return "the local-block provisioner makes only Block volumes (volumeMode: Block)"
    need = claim_request(pvc)
    if need > state.free:
        return (f"not enough space in storage pool {pool_name}: {format_bytes(need)} requested, "
                f"{format_bytes(state.free)} free")
    return ""


def allocated_by_pool(pvs: list[Obj], node: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for pv in pvs:
        pool = pv_pool(pv)
        if pool is not None and pv_node(pv) == node:
            out[pool] = out.get(pool, 0) + volume_capacity(pv)
    return out


__all__ = ["HPP_PROVISIONER", "VolumeStore", "desired_pv", "pv_name_for", "pv_node", "pv_pool"]
