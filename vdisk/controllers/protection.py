"""Storage object in-use protection: a claim used by a pod, or a bound volume, is not deleted under it.

Upstream: k8s pkg/controller/volume/pvcprotection and pvprotection (the finalizers
`kubernetes.io/pvc-protection` and `kubernetes.io/pv-protection`, added at create by the
StorageObjectInUseProtection admission plugin). A deleting claim keeps its finalizer while any pod that
is not Succeeded or Failed names it; a deleting volume keeps its finalizer while it is Bound.
"""

from __future__ import annotations

from typing import Any

from ..storage import PV_PROTECTION, PVC_PROTECTION, meta
from .client import PV, PVC, Client
from .runtime import Controller, Informer, Key, Result, key_of

Obj = dict[str, Any]


def pods_using_claim(pods: list[Obj], namespace: str, claim: str) -> list[Obj]:
    out = []
    for pod in pods:
        if meta(pod).get("namespace") != namespace:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            if ((vol.get("persistentVolumeClaim") or {}).get("claimName")) == claim:
                out.append(pod)
                break
    return out


class ProtectionController:
    def __init__(self, client: Client, pvcs: Informer, pvs: Informer, pods: Informer):
        self.client = client
        self.pvcs, self.pvs, self.pods = pvcs, pvs, pods
        self.claims = Controller("pvc-protection", self.sync_claim)
        self.volumes = Controller("pv-protection", self.sync_volume)
        self.claims.watch(pvcs)
        self.claims.watch(pods, self._claims_of_pod)
        self.volumes.watch(pvs)

    def _claims_of_pod(self, pod: Obj) -> list[Key]:
        ns = meta(pod).get("namespace", "")
        return [(ns, v["persistentVolumeClaim"]["claimName"]) for v in (pod.get("spec") or {}).get("volumes") or []
                if (v.get("persistentVolumeClaim") or {}).get("claimName")]

    async def sync_claim(self, key: Key) -> Result | None:
        pvc = self.pvcs.get(*key)
        if pvc is None or not meta(pvc).get("deletionTimestamp"):
            return None
        fins = meta(pvc).get("finalizers") or []
        if PVC_PROTECTION not in fins or pods_using_claim(self.pods.list(), *key):
            return None
        await self.client.patch(PVC, key[1], {"metadata": {"finalizers": [f for f in fins if f != PVC_PROTECTION],
                                                           "resourceVersion": meta(pvc)["resourceVersion"]}},
                                namespace=key[0])
        return None

    async def sync_volume(self, key: Key) -> Result | None:
        pv = self.pvs.get(*key)
        if pv is None or not meta(pv).get("deletionTimestamp"):
            return None
        fins = meta(pv).get("finalizers") or []
        if PV_PROTECTION not in fins or (pv.get("status") or {}).get("phase") == "Bound":
            return None
        await self.client.patch(PV, key[1], {"metadata": {"finalizers": [f for f in fins if f != PV_PROTECTION],
                                                          "resourceVersion": meta(pv)["resourceVersion"]}})
        return None


__all__ = ["ProtectionController", "key_of", "pods_using_claim"]
