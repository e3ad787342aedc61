"""HostPathProvisioner: the operator's side — pool claims for template pools, status, finalizer (R1, R2, R5).

Upstream: hostpath-provisioner-operator pkg/controller/hostpathprovisioner (controller.go,
storagepool.go): for each pool with a `pvcTemplate` and each selected node a claim
`hpp-pool-<pool>-<node>` (labelled `kubevirt.io.hostpath-provisioner/storagePool`, no ownerReference,
so it survives the CR); conditions Available/Progressing/Degraded; `storagePoolStatuses` with
desiredReady, currentReady and claimStatuses; the finalizer `finalizer.delete.hostpath-provisioner`
held until every node has unmounted its template pools. What each node sees of its pools (writable,
mounted, sharing the OS filesystem) comes from the node agents' reports on their Node objects.

Beyond upstream: a pool that shares the operating system's filesystem is reported with a Warning
event and the condition `StoragePoolSharedWithOS` (HPP raises only a Prometheus alert).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..storage import (
    ANN_SELECTED_NODE,
    ANN_TEMPLATE_MOUNTS,
    HPP_NAMESPACE,
    annotations_of,
    meta,
    node_is_ready,
    node_matches_workload,
    node_pools,
    template_claim_name,
)
from .client import HOSTPATHPROVISIONER, PVC, Client
from .runtime import Controller, EventRecorder, Informer, Key, Result, key_of, set_condition

log = logging.getLogger(__name__)

Obj = dict[str, Any]
FINALIZER = "finalizer.delete.hostpath-provisioner"
POOL_LABEL = "kubevirt.io.hostpath-provisioner/storagePool"


def pool_claim(hpp: Obj, pool: Obj, node: str) -> Obj:
    template = json.loads(json.dumps(pool["pvcTemplate"]))
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": template_claim_name(pool["name"], node), "namespace": HPP_NAMESPACE,
                         "labels": {POOL_LABEL: pool["name"], "app.kubernetes.io/managed-by": "hostpath-provisioner-operator",
                                    "app.kubernetes.io/component": "storage"},
                         "annotations": {ANN_SELECTED_NODE: node}},
            "spec": template}


class HostPathProvisionerController:
    def __init__(self, client: Client, hpps: Informer, nodes: Informer, pvcs: Informer, events: EventRecorder):
        self.client = client
        self.hpps, self.nodes, self.pvcs = hpps, nodes, pvcs
        self.events = events
        self.controller = Controller("hostpathprovisioner", self.reconcile)
        self.controller.watch(hpps)
        every = lambda o: [key_of(h) for h in self.hpps.list()]  # noqa: E731
        self.controller.watch(nodes, every)
        self.controller.watch(pvcs, lambda o: every(o) if POOL_LABEL in (meta(o).get("labels") or {}) else [])

    async def reconcile(self, key: Key) -> Result | None:
        hpp = self.hpps.get(*key)
        if hpp is None:
            return None
        name = key[1]
        fins = meta(hpp).get("finalizers") or []
        if meta(hpp).get("deletionTimestamp"):
            return await self._finalize(hpp)
        if FINALIZER not in fins:
            await self.client.patch(HOSTPATHPROVISIONER, name, {"metadata": {"finalizers": [*fins, FINALIZER],
                                                                           "resourceVersion": meta(hpp)["resourceVersion"]}})
            return None
        others = [h for h in self.hpps.list() if meta(h)["name"] != name]
        nodes = [n for n in self.nodes.list() if node_matches_workload(hpp, n)]
        pools = (hpp.get("spec") or {}).get("storagePools") or []
        for pool in pools:
            if pool.get("pvcTemplate") is None:
                continue
            for node in nodes:
                claim_name = template_claim_name(pool["name"], meta(node)["name"])
                if self.pvcs.get(HPP_NAMESPACE, claim_name) is None:
                    await self.client.create(PVC, pool_claim(hpp, pool, meta(node)["name"]), namespace=HPP_NAMESPACE)
                    log.info("created pool claim pool=%s node=%s claim=%s", pool["name"], meta(node)["name"],
                             claim_name)
        await self._update_status(hpp, pools, nodes, others)
        return Result(requeue_after=30)

    async def _update_status(self, hpp: Obj, pools: list[Obj], nodes: list[Obj], others: list[Obj]) -> None:
        statuses = []
        problems: list[str] = []
        shared: list[str] = []
        progressing = False
        for pool in pools:
            ready_nodes = 0
            desired = 0
            claims = []
            for node in nodes:
                if not node_is_ready(node):
                    continue
                desired += 1
                state = node_pools(node).get(pool["name"])
                if state is not None and state.ready:
                    ready_nodes += 1
                    if state.shared_with_os:
                        shared.append(f"{pool['name']} on {meta(node)['name']}")
                elif state is not None and state.message and "waiting" not in state.message:
                    problems.append(f"{meta(node)['name']}: {state.message}")
                else:
                    progressing = True
                if pool.get("pvcTemplate") is not None:
                    cname = template_claim_name(pool["name"], meta(node)["name"])
                    claim = self.pvcs.get(HPP_NAMESPACE, cname)
                    phase = (claim.get("status") or {}).get("phase", "Pending") if claim else "Pending"
                    claims.append({"name": cname, "status": {"phase": phase}})
                    if phase != "Bound":
                        progressing = True
            entry: Obj = {"name": pool["name"], "phase": "Ready" if desired and ready_nodes == desired else
                          ("Mounting" if pool.get("pvcTemplate") is not None else "Preparing"),
                          "desiredReady": desired, "currentReady": ready_nodes}
            if claims:
                entry["claimStatuses"] = claims
            statuses.append(entry)
        if others:
            problems.append(f"there should be a single hostpath provisioner, {len(others) + 1} items found")
        conds = list((hpp.get("status") or {}).get("conditions") or [])
        available = not problems and not progressing and all(s["phase"] == "Ready" for s in statuses)
        conds = set_condition(conds, "Available", "True" if available else "False",
                              "Complete" if available else ("Degraded" if problems else "Deploying"),
                              "Application Available" if available else "; ".join(problems) or
                              "Storage pools are being prepared")
        conds = set_condition(conds, "Progressing", "True" if progressing and not problems else "False",
                              "Deploying" if progressing else "Complete",
                              "Storage pools are being prepared" if progressing else "")
        conds = set_condition(conds, "Degraded", "True" if problems else "False",
                              "Degraded" if problems else "Complete", "; ".join(problems))
        if shared:
            message = ("storage pools share the operating system's filesystem: " + ", ".join(shared) +
                       "; volumes can fill it and make the node unusable")
            conds = set_condition(conds, "StoragePoolSharedWithOS", "True", "PoolPathSharedWithOS", message)
        else:
            conds = [c for c in conds if c.get("type") != "StoragePoolSharedWithOS"]
        status = {**(hpp.get("status") or {}), "conditions": conds, "storagePoolStatuses": statuses,
                  "observedVersion": "v0.25.0-vdisk", "operatorVersion": "v0.25.0-vdisk",
                  "targetVersion": "v0.25.0-vdisk"}
        old = hpp.get("status") or {}
        if status != old:
            old_shared = any(c.get("type") == "StoragePoolSharedWithOS" for c in old.get("conditions") or [])
            if shared and not old_shared:
                await self.events.event(hpp, "Warning", "PoolPathSharedWithOS", message)
            old_degraded = any(c.get("type") == "Degraded" and c.get("status") == "True"
                               for c in old.get("conditions") or [])
            if problems and not old_degraded:
                await self.events.event(hpp, "Warning", "Degraded", "; ".join(problems))
            await self.client.patch_status(HOSTPATHPROVISIONER, meta(hpp)["name"], status)

    async def _finalize(self, hpp: Obj) -> Result | None:
        still = [meta(n)["name"] for n in self.nodes.list()
                 if node_is_ready(n) and annotations_of(n).get(ANN_TEMPLATE_MOUNTS)]
        if still:
            return Result(requeue_after=2)
        fins = [f for f in meta(hpp).get("finalizers") or [] if f != FINALIZER]
        await self.client.patch(HOSTPATHPROVISIONER, meta(hpp)["name"],
                                {"metadata": {"finalizers": fins, "resourceVersion": meta(hpp)["resourceVersion"]}})
        return None
