"""PersistentVolume binding and reclaim: claims find volumes, volumes follow their claims (R3, R4, R43).

Upstream: k8s pkg/controller/volume/persistentvolume/pv_controller.go (syncClaim, syncVolume,
bind, reclaimVolume) and index.go (findBestMatchForClaim); event reasons and messages as there.
Dynamic provisioning is handed to the node agents: for our provisioners the claim gets
`volume.kubernetes.io/storage-provisioner` and, for Immediate classes, the node chosen here (the
Ready node whose pool has the most free space) in `volume.kubernetes.io/selected-node`; for
WaitForFirstConsumer classes the scheduler sets that annotation when a pod is placed. The node agent
named there creates the volume and a PV pre-bound to the claim; this controller completes binding.

Beyond upstream: a statically created PV with reclaim policy Delete has no deleter here, so it goes
Failed when released (the seed's 10.19.17 says as much); provisioned volumes are deleted by their node.
"""

from __future__ import annotations

import logging
from typing import Any

from ..storage import (
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    OUR_PROVISIONERS,
    annotations_of,
    best_volume,
    claim_class,
    claim_request,
    meta,
    node_is_ready,
    node_pools,
    pool_of_class,
)
from .client import PV, PVC, Client
from .runtime import Controller, EventRecorder, Informer, Key, Result, key_of

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MSG_WFFC = "waiting for first consumer to be created before binding"
MSG_NO_CLASS = "no persistent volumes available for this claim and no storage class is set"
MSG_DELETER = 'error getting deleter volume plugin for volume "{}": no deletable volume plugin matched'


def external_provisioning_message(provisioner: str) -> str:
    return (f"Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by "
            "the system administrator. If volume creation is delayed, please verify that the provisioner is running "
            "and correctly registered.")


def choose_node(nodes: list[Obj], pool: str, size: int) -> tuple[str | None, str]:
    """The Ready node whose `pool` has the most free space and fits `size`; or (None, why not)."""
    best: tuple[int, str] | None = None
    seen_pool = False
    for node in nodes:
        if not node_is_ready(node):
            continue
        state = node_pools(node).get(pool)
        if state is None or not state.ready:
            continue
        seen_pool = True
        if state.free >= size and (best is None or state.free > best[0]):
            best = (state.free, meta(node)["name"])
    if best is not None:
        return best[1], ""
    if not seen_pool:
        return None, f'no Ready node offers storage pool "{pool}"'
    return None, f'no Ready node has {size} bytes free in storage pool "{pool}"'


class PersistentVolumeController:
    def __init__(self, client: Client, pvcs: Informer, pvs: Informer, classes: Informer, nodes: Informer,
                 events: EventRecorder):
        self.client = client
        self.pvcs, self.pvs, self.classes, self.nodes = pvcs, pvs, classes, nodes
        self.events = events
        self.claims = Controller("persistentvolume-claims", self.sync_claim, workers=2)
        self.volumes = Controller("persistentvolume-volumes", self.sync_volume, workers=2)
        self.claims.watch(pvcs)
        self.claims.watch(pvs, self._claim_of_volume)
        self.claims.watch(classes, lambda o: self._pending_claims())
        self.claims.watch(nodes, lambda o: self._claims_waiting_for_a_node())
        self.volumes.watch(pvs)
        self.volumes.watch(pvcs, self._volume_of_claim)

    def _claim_of_volume(self, pv: Obj) -> list[Key]:
        ref = (pv.get("spec") or {}).get("claimRef")
        keys = [(ref.get("namespace", ""), ref.get("name", ""))] if ref else []
        return keys + ([] if ref else self._pending_claims())

    def _volume_of_claim(self, pvc: Obj) -> list[Key]:
        name = (pvc.get("spec") or {}).get("volumeName")
        keys = [("", name)] if name else []
        # volumes pointing at a claim (pre-bound, or released when the claim goes)
        for pv in self.pvs.list():
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if ref.get("namespace") == meta(pvc).get("namespace") and ref.get("name") == meta(pvc).get("name"):
                keys.append(("", meta(pv)["name"]))
        return keys

    def _pending_claims(self) -> list[Key]:
        return [key_of(c) for c in self.pvcs.list() if (c.get("status") or {}).get("phase") != "Bound"]

    def _claims_waiting_for_a_node(self) -> list[Key]:
        """Claims a node change may help: unbound, and no node chosen yet (a node's pools changed)."""
        return [key_of(c) for c in self.pvcs.list() if (c.get("status") or {}).get("phase") != "Bound"
                and not annotations_of(c).get(ANN_SELECTED_NODE)]

    # --- claims -------------------------------------------------------------------------------------------

    async def sync_claim(self, key: Key) -> Result | None:
        pvc = self.pvcs.get(*key)
        if pvc is None or meta(pvc).get("deletionTimestamp"):
            return None
        spec = pvc.get("spec") or {}
        volume_name = spec.get("volumeName")
        if volume_name:
            return await self._sync_bound_claim(pvc, volume_name)
        class_name = claim_class(pvc)
        sc = self.classes.get("", class_name) if class_name else None
        wffc = sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"
        selected = annotations_of(pvc).get(ANN_SELECTED_NODE)
        node = self.nodes.get("", selected) if selected else None
        pv = best_volume(self.pvs.list(), pvc, node if (wffc or node is not None) else None)
        if pv is not None and (not wffc or selected):
            await self._bind(pv, pvc)
            return None
        if wffc and not selected:
            await self.events.event(pvc, "Normal", "WaitForFirstConsumer", MSG_WFFC)
            return None
        if sc is None:
            if class_name:
                await self.events.event(pvc, "Warning", "ProvisioningFailed",
                                        f'storageclass.storage.k8s.io "{class_name}" not found')
            else:
                await self.events.event(pvc, "Normal", "FailedBinding", MSG_NO_CLASS)
            return None
        provisioner = sc.get("provisioner", "")
        patch: Obj = {}
        ann = annotations_of(pvc)
        if ann.get(ANN_STORAGE_PROVISIONER) != provisioner:
            patch[ANN_STORAGE_PROVISIONER] = provisioner
            patch[ANN_BETA_STORAGE_PROVISIONER] = provisioner
        if provisioner in OUR_PROVISIONERS and not selected:
            node_name, why = choose_node(self.nodes.list(), pool_of_class(sc), claim_request(pvc))
            if node_name is None:
                await self.events.event(pvc, "Warning", "ProvisioningFailed", why)
                return Result(requeue_after=10)
            patch[ANN_SELECTED_NODE] = node_name
        if patch:
            await self.client.patch(PVC, key[1], {"metadata": {"annotations": patch}}, namespace=key[0])
        if provisioner not in OUR_PROVISIONERS or not ann.get(ANN_STORAGE_PROVISIONER):
            await self.events.event(pvc, "Normal", "ExternalProvisioning", external_provisioning_message(provisioner))
        return None

    async def _sync_bound_claim(self, pvc: Obj, volume_name: str) -> Result | None:
        ns, name = key_of(pvc)
        pv = self.pvs.get("", volume_name)
        phase = (pvc.get("status") or {}).get("phase")
        if pv is None:
            if phase == "Bound":
                await self.client.patch_status(PVC, name, {"phase": "Lost"}, namespace=ns)
                await self.events.event(pvc, "Warning", "ClaimLost",
                                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
            else:
                await self.events.event(pvc, "Normal", "FailedBinding", f'volume "{volume_name}" not found')
            return None
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref and not (ref.get("namespace") == ns and ref.get("name") == name and
                        (not ref.get("uid") or ref.get("uid") == meta(pvc).get("uid"))):
            if phase == "Bound":
                await self.client.patch_status(PVC, name, {"phase": "Lost"}, namespace=ns)
                await self.events.event(pvc, "Warning", "ClaimMisbound",
                                        "Two claims are bound to the same volume, this one is bound incorrectly")
            else:
                await self.events.event(pvc, "Warning", "FailedBinding",
                                        f'volume "{volume_name}" already bound to a different claim.')
            return None
        await self._bind(pv, pvc)
        return None

    async def _bind(self, pv: Obj, pvc: Obj) -> None:
        ns, name = key_of(pvc)
        pv_name = meta(pv)["name"]
        ref = (pv.get("spec") or {}).get("claimRef")
        want_ref = {"kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": meta(pvc)["uid"],
                    "apiVersion": "v1", "resourceVersion": meta(pvc).get("resourceVersion", "")}
        if not ref or ref.get("uid") != want_ref["uid"]:
            body: Obj = {"spec": {"claimRef": want_ref}}
            if not ref:
                body["metadata"] = {"annotations": {ANN_BOUND_BY_CONTROLLER: "yes"}}
            pv = await self.client.patch(PV, pv_name, body)
        if (pv.get("status") or {}).get("phase") != "Bound":
            pv = await self.client.patch_status(PV, pv_name, {"phase": "Bound"})
        ann = annotations_of(pvc)
        spec = pvc.get("spec") or {}
        if spec.get("volumeName") != pv_name or ann.get(ANN_BIND_COMPLETED) != "yes":
            md: Obj = {"annotations": {ANN_BIND_COMPLETED: "yes"}}
            if spec.get("volumeName") != pv_name:
                md["annotations"][ANN_BOUND_BY_CONTROLLER] = "yes"
            pvc = await self.client.patch(PVC, name, {"metadata": md, "spec": {"volumeName": pv_name}}, namespace=ns)
        pv_spec = pv.get("spec") or {}
        status = pvc.get("status") or {}
        want = {"phase": "Bound", "accessModes": pv_spec.get("accessModes") or [],
                "capacity": pv_spec.get("capacity") or {}}
        if {k: status.get(k) for k in want} != want:
            await self.client.patch_status(PVC, name, want, namespace=ns)
            log.info("bound claim=%s/%s volume=%s", ns, name, pv_name)

    # --- volumes ------------------------------------------------------------------------------------------

    async def sync_volume(self, key: Key) -> Result | None:
        pv = self.pvs.get(*key)
        if pv is None:
            return None
        name = key[1]
        spec = pv.get("spec") or {}
        phase = (pv.get("status") or {}).get("phase")
        ref = spec.get("claimRef")
        if not ref:
            if phase in (None, "", "Pending"):
                await self.client.patch_status(PV, name, {"phase": "Available"})
            elif phase in ("Bound", "Released") and not meta(pv).get("deletionTimestamp"):
                await self.client.patch_status(PV, name, {"phase": "Available"})
            return None
        claim = self.pvcs.get(ref.get("namespace", ""), ref.get("name", ""))
        if claim is not None and (not ref.get("uid") or meta(claim).get("uid") == ref.get("uid")):
            bound_to = (claim.get("spec") or {}).get("volumeName")
            if bound_to == name:
                if phase != "Bound":
                    await self.client.patch_status(PV, name, {"phase": "Bound"})
            elif bound_to and annotations_of(pv).get(ANN_BOUND_BY_CONTROLLER) == "yes":
                # the claim chose another volume: give this one back
                await self.client.patch(PV, name, {"spec": {"claimRef": None}})
            elif phase in (None, "", "Pending"):
                await self.client.patch_status(PV, name, {"phase": "Available"})
            return None
        if not ref.get("uid"):
            if phase in (None, "", "Pending"):
                await self.client.patch_status(PV, name, {"phase": "Available"})
            return None
        # released: the claim it was bound to is gone
        policy = spec.get("persistentVolumeReclaimPolicy", "Retain")
        provisioner = annotations_of(pv).get(ANN_PROVISIONED_BY)
        if policy == "Delete" and provisioner not in OUR_PROVISIONERS:
            if phase != "Failed":
                await self.client.patch_status(PV, name, {"phase": "Failed", "message": MSG_DELETER.format(name)})
                await self.events.event(pv, "Warning", "VolumeFailedDelete", MSG_DELETER.format(name))
            return None
        if phase != "Released":
            await self.client.patch_status(PV, name, {"phase": "Released"})
            log.info("volume released volume=%s policy=%s", name, policy)
        return None
