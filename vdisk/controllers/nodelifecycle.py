"""Node lifecycle: a node that stops heartbeating goes NotReady (Ready=Unknown).

Upstream: k8s pkg/controller/nodelifecycle (tryUpdateNodeHealth): after `node-monitor-grace-period`
(40 s) without a heartbeat every condition becomes Unknown with reason NodeStatusUnknown and message
"Kubelet stopped posting node status.".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..storage import meta
from .client import NODE, Client
from .runtime import Controller, Informer, Key, Result, now_rfc3339

Obj = dict[str, Any]
MESSAGE = "Kubelet stopped posting node status."


def _age(ts: str | None) -> float:
    if not ts:
        return float("inf")
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(ts.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return float("inf")


class NodeLifecycleController:
    def __init__(self, client: Client, nodes: Informer, grace: float = 40.0):
        self.client = client
        self.nodes = nodes
        self.grace = grace
        self.controller = Controller("node-lifecycle", self.reconcile)
        self.controller.watch(nodes)

    async def reconcile(self, key: Key) -> Result | None:
        node = self.nodes.get(*key)
        if node is None:
            return None
        conds = (node.get("status") or {}).get("conditions") or []
        ready = next((c for c in conds if c.get("type") == "Ready"), None)
        if ready is None:
            return Result(requeue_after=self.grace)
        age = _age(ready.get("lastHeartbeatTime"))
        if age < self.grace:
            return Result(requeue_after=self.grace - age + 0.5)
        if ready.get("status") == "Unknown":
            return None
        now = now_rfc3339()
        new = [{**c, "status": "Unknown", "reason": "NodeStatusUnknown", "message": MESSAGE,
                "lastTransitionTime": now} for c in conds]
        await self.client.patch_status(NODE, meta(node)["name"], {"conditions": new})
        return None
