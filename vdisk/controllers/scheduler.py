"""Scheduler-lite: places pending Pods on nodes, and WaitForFirstConsumer claims with them (R4).

Upstream: kube-scheduler's filters for what vdisk needs (NodeName, NodeUnschedulable, NodeAffinity,
NodeResourcesFit on cpu/memory requests, VolumeBinding with the pool capacity nodes report instead
of CSIStorageCapacity) and its messages ("0/2 nodes are available: ..."). Binding a pod first sets
`volume.kubernetes.io/selected-node` on its unbound WFFC claims (the node agent there provisions,
the binder binds), then `spec.nodeName`.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from ..quantity import Quantity, QuantityError
from ..storage import (
    ANN_SELECTED_NODE,
    OUR_PROVISIONERS,
    annotations_of,
    best_volume,
    claim_class,
    claim_request,
    meta,
    node_is_ready,
    node_pools,
    pod_fits_node_selector,
    pool_of_class,
    volume_fits_node,
)
from .client import POD, PVC, Client
from .runtime import Controller, EventRecorder, Informer, Key, Result, key_of, now_rfc3339

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def _requests(pod: Obj) -> tuple[int, int]:
    """(milli-cpu, memory bytes) requested by a pod (sum of containers, max with init containers)."""
    def of(containers: list[Obj]) -> list[tuple[int, int]]:
        out = []
        for c in containers:
            req = (c.get("resources") or {}).get("requests") or {}
            try:
                cpu = int(Quantity.parse(req.get("cpu", "0")).value * 1000)
                mem = Quantity.parse(req.get("memory", "0")).bytes
            except QuantityError:
                cpu = mem = 0
            out.append((cpu, mem))
        return out

    spec = pod.get("spec") or {}
    main = of(spec.get("containers") or [])
    init = of(spec.get("initContainers") or [])
    cpu = sum(c for c, _ in main)
    mem = sum(m for _, m in main)
    for c, m in init:
        cpu, mem = max(cpu, c), max(mem, m)
    return cpu, mem


def _allocatable(node: Obj) -> tuple[int, int]:
    alloc = (node.get("status") or {}).get("allocatable") or {}
    try:
        return int(Quantity.parse(alloc.get("cpu", "0")).value * 1000), Quantity.parse(alloc.get("memory", "0")).bytes
    except QuantityError:
        return 0, 0


class Scheduler:
    def __init__(self, client: Client, pods: Informer, nodes: Informer, pvcs: Informer, pvs: Informer,
                 classes: Informer, events: EventRecorder):
        self.client = client
        self.pods, self.nodes, self.pvcs, self.pvs, self.classes = pods, nodes, pvcs, pvs, classes
        self.events = events
        self.controller = Controller("scheduler", self.schedule)
        self.controller.watch(pods, lambda p: [key_of(p)] if self._wants_scheduling(p) else [])
        requeue = lambda o: [key_of(p) for p in self.pods.list() if self._wants_scheduling(p)]  # noqa: E731
        self.controller.watch(nodes, requeue)
        self.controller.watch(pvcs, self._pods_of_claim)
        self.controller.watch(pvs, lambda pv: self._pods_of_claim_ref((pv.get("spec") or {}).get("claimRef")))

    def _pods_of_claim_ref(self, ref: Obj | None) -> list[Key]:
        if not ref:
            return []
        return self._pods_of_claim({"metadata": {"namespace": ref.get("namespace", ""), "name": ref.get("name", "")}})

    def _pods_of_claim(self, pvc: Obj) -> list[Key]:
        ns, name = key_of(pvc)
        return [key_of(p) for p in self.pods.list(ns) if self._wants_scheduling(p) and
                any((v.get("persistentVolumeClaim") or {}).get("claimName") == name
                    for v in (p.get("spec") or {}).get("volumes") or [])]

    @staticmethod
    def _wants_scheduling(pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (not spec.get("nodeName") and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
                and not meta(pod).get("deletionTimestamp")
                and (pod.get("status") or {}).get("phase") in (None, "", "Pending"))

    def _node_problem(self, pod: Obj, node: Obj, claims: list[Obj], used: dict[str, tuple[int, int]]) -> str | None:
        """Why `pod` cannot go to `node` (a reason as kube-scheduler counts them), or None."""
        if not node_is_ready(node):
            return "node(s) were not ready"
        if (node.get("spec") or {}).get("unschedulable"):
            return "node(s) were unschedulable"
        if not pod_fits_node_selector(pod, node):
            return "node(s) didn't match Pod's node affinity/selector"
        for pvc in claims:
            volume = (pvc.get("spec") or {}).get("volumeName")
            if volume:
                pv = self.pvs.get("", volume)
                if pv is not None and not volume_fits_node(pv, node):
                    return "node(s) had volume node affinity conflict"
                continue
            if best_volume(self.pvs.list(), pvc, node) is not None:
                continue
            sc = self.classes.get("", claim_class(pvc))
            if sc is None or sc.get("provisioner") not in OUR_PROVISIONERS:
                return "node(s) didn't find available persistent volumes to bind"
            state = node_pools(node).get(pool_of_class(sc))
            if state is None or not state.ready:
                return "node(s) did not have the claim's storage pool"
            if state.free < claim_request(pvc):
                return "node(s) did not have enough free storage"
        cpu, mem = _requests(pod)
        acpu, amem = _allocatable(node)
        ucpu, umem = used.get(meta(node)["name"], (0, 0))
        if cpu and acpu and ucpu + cpu > acpu:
            return "Insufficient cpu"
        if mem and amem and umem + mem > amem:
            return "Insufficient memory"
        return None

    async def schedule(self, key: Key) -> Result | None:
        pod = self.pods.get(*key)
        if pod is None or not self._wants_scheduling(pod):
            return None
        ns = key[0]
        claims: list[Obj] = []
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if not name:
                continue
            pvc = self.pvcs.get(ns, name)
            if pvc is None:
                return await self._unschedulable(pod, f'persistentvolumeclaim "{name}" not found')
            if meta(pvc).get("deletionTimestamp"):
                return await self._unschedulable(pod, f'persistentvolumeclaim "{name}" is being deleted')
            if not (pvc.get("spec") or {}).get("volumeName"):
                sc = self.classes.get("", claim_class(pvc))
                wffc = sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"
                if not wffc and not annotations_of(pvc).get(ANN_SELECTED_NODE):
                    return await self._unschedulable(pod, "pod has unbound immediate PersistentVolumeClaims")
            claims.append(pvc)
        used: dict[str, tuple[int, int]] = {}
        for other in self.pods.list():
            n = (other.get("spec") or {}).get("nodeName")
            if n and (other.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                c, m = _requests(other)
                uc, um = used.get(n, (0, 0))
                used[n] = (uc + c, um + m)
        nodes = sorted(self.nodes.list(), key=lambda n: meta(n)["name"])
        reasons: Counter[str] = Counter()
        fits = []
        for node in nodes:
            problem = self._node_problem(pod, node, claims, used)
            if problem is None:
                fits.append(node)
            else:
                reasons[problem] += 1
        if not fits:
            detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
            return await self._unschedulable(pod, f"0/{len(nodes)} nodes are available" + (f": {detail}." if detail
                                                                                           else "."))
        # prefer the node with the least requested cpu, then the most free memory
        chosen = min(fits, key=lambda n: (used.get(meta(n)["name"], (0, 0))[0], meta(n)["name"]))
        node_name = meta(chosen)["name"]
        for pvc in claims:
            if not (pvc.get("spec") or {}).get("volumeName") and annotations_of(pvc).get(ANN_SELECTED_NODE) != node_name:
                await self.client.patch(PVC, meta(pvc)["name"],
                                        {"metadata": {"annotations": {ANN_SELECTED_NODE: node_name}}}, namespace=ns)
        await self.client.patch(POD, key[1], {"spec": {"nodeName": node_name}}, namespace=ns)
        await self._set_scheduled(pod, "True", "", "")
        await self.events.event(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{key[1]} to {node_name}")
        log.info("scheduled pod=%s/%s node=%s", ns, key[1], node_name)
        return None

    async def _unschedulable(self, pod: Obj, message: str) -> Result:
        await self._set_scheduled(pod, "False", "Unschedulable", message)
        await self.events.event(pod, "Warning", "FailedScheduling", message)
        return Result(requeue_after=5)

    async def _set_scheduled(self, pod: Obj, status: str, reason: str, message: str) -> None:
        conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
        old = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"),
                   None)
        if old and old.get("status") == status and old.get("message", "") == message:
            return
        cond: Obj = {"type": "PodScheduled", "status": status, "lastProbeTime": None,
                     "lastTransitionTime": now_rfc3339()}
        if reason:
            cond["reason"] = reason
            cond["message"] = message
        ns, name = key_of(pod)
        await self.client.patch_status(POD, name, {"conditions": conds + [cond]}, namespace=ns)
