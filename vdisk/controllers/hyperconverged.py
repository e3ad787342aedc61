"""HyperConverged -> the CDI custom resource: HCO's storage settings flow into CDI's config (R14, R15, R40, R45).

Upstream: hyperconverged-cluster-operator controllers/operands/cdi.go (NewCDI: filesystemOverhead,
scratchSpaceStorageClass, podResourceRequirements from resourceRequirements.storageWorkloads,
insecureRegistries from storageImport, the `cdi.kubevirt.io/configAuthority` annotation). HCO owns the
keys it sets in `CDI.spec.config`; other keys there (e.g. `preallocation`) stay as a user set them.
This controller never touches CDIConfig: cdiconfig.py turns the CDI config into CDIConfig.
"""

from __future__ import annotations

import logging
from typing import Any

from .client import CDI, HYPERCONVERGED, Client
from .runtime import Controller, Informer, Key, Result, set_condition

log = logging.getLogger(__name__)

Obj = dict[str, Any]

HCO_NAMESPACE = "openshift-cnv"
HCO_NAME = "kubevirt-hyperconverged"
CDI_NAME = "cdi-kubevirt-hyperconverged"
ANN_CONFIG_AUTHORITY = "cdi.kubevirt.io/configAuthority"
# Keys of CDI.spec.config that HCO derives from its own spec (cdi.go getCDIConfig).
OWNED_KEYS = ("filesystemOverhead", "scratchSpaceStorageClass", "podResourceRequirements", "insecureRegistries",
              "featureGates")
FEATURE_GATES = ["HonorWaitForFirstConsumer", "DataVolumeClaimAdoption", "WebhookPvcRendering"]


def desired_cdi_config(hco_spec: Obj) -> Obj:
    """The CDI config keys HCO sets, from its spec."""
    config: Obj = {"featureGates": list(FEATURE_GATES)}
    if hco_spec.get("filesystemOverhead"):
        config["filesystemOverhead"] = hco_spec["filesystemOverhead"]
    if hco_spec.get("scratchSpaceStorageClass"):
        config["scratchSpaceStorageClass"] = hco_spec["scratchSpaceStorageClass"]
    workloads = (hco_spec.get("resourceRequirements") or {}).get("storageWorkloads")
    if workloads:
        config["podResourceRequirements"] = workloads
    registries = (hco_spec.get("storageImport") or {}).get("insecureRegistries")
    if registries:
        config["insecureRegistries"] = list(registries)
    return config


class HyperConvergedController:
    def __init__(self, client: Client, hco: Informer, cdi: Informer):
        self.client = client
        self.hco = hco
        self.cdi = cdi
        self.controller = Controller("hyperconverged", self.reconcile)
        self.controller.watch(hco)
        self.controller.watch(cdi, lambda o: [(HCO_NAMESPACE, HCO_NAME)])

    async def reconcile(self, key: Key) -> Result | None:
        if key != (HCO_NAMESPACE, HCO_NAME):
            return None  # HCO's webhook allows only this one; others are ignored
        hco = self.hco.get(*key)
        if hco is None or (hco.get("metadata") or {}).get("deletionTimestamp"):
            return None
        await self._ensure_cdi(hco)
        await self._update_status(hco)
        return None

    async def _ensure_cdi(self, hco: Obj) -> None:
        want = desired_cdi_config(hco.get("spec") or {})
        cdi = self.cdi.get("", CDI_NAME)
        if cdi is None:
            await self.client.create(CDI, {
                "apiVersion": CDI.api_version, "kind": CDI.kind,
                "metadata": {"name": CDI_NAME, "labels": {"app": HCO_NAME, "app.kubernetes.io/managed-by": "hco-operator"},
                             "annotations": {ANN_CONFIG_AUTHORITY: ""}},
                "spec": {"config": want, "uninstallStrategy": "BlockUninstallIfWorkloadsExist"},
            })
            log.info("created CDI name=%s", CDI_NAME)
            return
        current = ((cdi.get("spec") or {}).get("config") or {})
        merged = {k: v for k, v in current.items() if k not in OWNED_KEYS}
        merged.update(want)
        ann = (cdi.get("metadata") or {}).get("annotations") or {}
        if merged != current or ANN_CONFIG_AUTHORITY not in ann:
            # A JSON merge patch cannot delete keys inside `config` it does not name, so name them as null.
            patch_config: Obj = {k: None for k in current if k not in merged}
            patch_config.update(merged)
            await self.client.patch(CDI, CDI_NAME, {"metadata": {"annotations": {ANN_CONFIG_AUTHORITY: ""}},
                                                    "spec": {"config": patch_config}})

    async def _update_status(self, hco: Obj) -> None:
        status = hco.get("status") or {}
        conds = list(status.get("conditions") or [])
        gen = (hco.get("metadata") or {}).get("generation")
        for typ, st, reason, msg in (("ReconcileComplete", "True", "ReconcileCompleted", "Reconcile completed successfully"),
                                     ("Available", "True", "ReconcileCompleted", "Reconcile completed successfully"),
                                     ("Progressing", "False", "ReconcileCompleted", "Reconcile completed successfully"),
                                     ("Degraded", "False", "ReconcileCompleted", "Reconcile completed successfully"),
                                     ("Upgradeable", "True", "ReconcileCompleted", "Reconcile completed successfully")):
            conds = set_condition(conds, typ, st, reason, msg, observedGeneration=gen)
        new_status = {**status, "conditions": conds, "observedGeneration": gen}
        if new_status != status:
            await self.client.patch_status(HYPERCONVERGED, HCO_NAME, new_status, namespace=HCO_NAMESPACE)
