"""ResourceQuota status: `hard` from the spec and `used` counted from the namespace's pods and claims.

Upstream: k8s pkg/controller/resourcequota (syncResourceQuota); `kubectl describe quota` and
`kubectl get quota` read these.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ..quota import fmt, namespace_usage
from ..storage import meta
from .client import RESOURCEQUOTA, Client
from .runtime import Controller, Informer, Key, Result, key_of

Obj = dict[str, Any]


class ResourceQuotaController:
    def __init__(self, client: Client, quotas: Informer, pods: Informer, pvcs: Informer):
        self.client = client
        self.quotas, self.pods, self.pvcs = quotas, pods, pvcs
        self.controller = Controller("resourcequota", self.reconcile)
        self.controller.watch(quotas)
        in_ns = lambda o: [key_of(q) for q in self.quotas.list(meta(o).get("namespace", ""))]  # noqa: E731
        self.controller.watch(pods, in_ns)
        self.controller.watch(pvcs, in_ns)

    async def reconcile(self, key: Key) -> Result | None:
        quota = self.quotas.get(*key)
        if quota is None:
            return None
        hard = (quota.get("spec") or {}).get("hard") or {}
        usage = namespace_usage(self.pods.list(key[0]), self.pvcs.list(key[0]))
        status = {"hard": dict(hard), "used": {k: fmt(usage.get(k, Fraction(0)), v) for k, v in hard.items()}}
        if (quota.get("status") or {}) != status:
            await self.client.patch_status(RESOURCEQUOTA, key[1], status, namespace=key[0])
        return None
