"""CDIConfig `config`: its spec from the CDI resource, its status computed from spec and StorageClasses.

Upstream: containerized-data-importer pkg/controller/config-controller.go (reconcileFilesystemOverhead,
reconcileStorageClass, reconcileDefaultPodResourceRequirements) and the operator's copy of
`CDI.spec.config` into `CDIConfig.spec` when CDI carries `cdi.kubevirt.io/configAuthority`.

The seed sets two defaults that differ from current CDI: filesystem overhead 0.055 (R13) and worker
pod requests/limits of 0, i.e. none (R15). As CDI: an invalid global overhead falls back to the default
(with a Warning event); an invalid value for an existing StorageClass fails the reconcile with an event
and leaves the published status unchanged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .client import CDICONFIG, Client
from .hyperconverged import ANN_CONFIG_AUTHORITY
from .runtime import Controller, EventRecorder, Informer, Key, Result, Terminal

log = logging.getLogger(__name__)

Obj = dict[str, Any]

CONFIG_NAME = "config"
DEFAULT_OVERHEAD = "0.055"
OVERHEAD_RE = re.compile(r"^(0(?:\.\d{1,3})?|1)$")
DEFAULT_POD_RESOURCES = {"limits": {"cpu": "0", "memory": "0"}, "requests": {"cpu": "0", "memory": "0"}}
ANN_DEFAULT_SC = "storageclass.kubernetes.io/is-default-class"
ANN_DEFAULT_SC_BETA = "storageclass.beta.kubernetes.io/is-default-class"


def is_default_storage_class(sc: Obj) -> bool:
    ann = (sc.get("metadata") or {}).get("annotations") or {}
    return ann.get(ANN_DEFAULT_SC) == "true" or ann.get(ANN_DEFAULT_SC_BETA) == "true"


def default_storage_class(classes: list[Obj]) -> str:
    defaults = sorted((sc for sc in classes if is_default_storage_class(sc)),
                      key=lambda sc: (sc["metadata"].get("creationTimestamp", ""), sc["metadata"]["name"]), reverse=True)
    return str(defaults[0]["metadata"]["name"]) if defaults else ""


def filesystem_overhead(spec: Obj, classes: list[Obj]) -> Obj:
    """status.filesystemOverhead (CDI reconcileFilesystemOverhead): an invalid global falls back to the
    default; an invalid value for an existing StorageClass fails the reconcile (raises Terminal)."""
    fo = spec.get("filesystemOverhead") or {}
    glob = fo.get("global") or DEFAULT_OVERHEAD
    if not OVERHEAD_RE.match(str(glob)):
        glob = DEFAULT_OVERHEAD
    per_class = fo.get("storageClass") or {}
    out: dict[str, str] = {}
    for sc in classes:
        name = sc["metadata"]["name"]
        value = per_class.get(name)
        if value is not None and not OVERHEAD_RE.match(str(value)):
            raise Terminal("InvalidFilesystemOverhead", f"invalid filesystem overhead {value!r} for storage class "
                           f"{name}: must be a number between 0 and 1 with at most 3 decimals")
        out[name] = str(value if value is not None else glob)
    return {"global": str(glob), "storageClass": out}


def scratch_space_class(spec: Obj, classes: list[Obj]) -> str:
    names = {sc["metadata"]["name"] for sc in classes}
    wanted = spec.get("scratchSpaceStorageClass")
    if wanted and wanted in names:
        return str(wanted)
    return default_storage_class(classes)


def compute_status(spec: Obj, classes: list[Obj], current: Obj, upload_proxy_url: str = "") -> Obj:
    status = dict(current)
    status["filesystemOverhead"] = filesystem_overhead(spec, classes)
    scratch = scratch_space_class(spec, classes)
    if scratch:
        status["scratchSpaceStorageClass"] = scratch
    else:
        status.pop("scratchSpaceStorageClass", None)
    status["defaultPodResourceRequirements"] = spec.get("podResourceRequirements") or DEFAULT_POD_RESOURCES
    status["preallocation"] = bool(spec.get("preallocation", False))
    for key in ("importProxy", "imagePullSecrets"):
        if spec.get(key) is not None:
            status[key] = spec[key]
    if spec.get("uploadProxyURLOverride"):
        status["uploadProxyURL"] = spec["uploadProxyURLOverride"]
    elif upload_proxy_url:
        status["uploadProxyURL"] = upload_proxy_url
    return status


class CDIConfigController:
    def __init__(self, client: Client, cdiconfig: Informer, cdi: Informer, storageclasses: Informer,
                 events: EventRecorder, upload_proxy_url: str = ""):
        self.upload_proxy_url = upload_proxy_url
        self.client = client
        self.cdiconfig = cdiconfig
        self.cdi = cdi
        self.storageclasses = storageclasses
        self.events = events
        self.controller = Controller("cdiconfig", self.reconcile)
        to_config = lambda o: [("", CONFIG_NAME)]  # noqa: E731
        self.controller.watch(cdiconfig, to_config)
        self.controller.watch(cdi, to_config)
        self.controller.watch(storageclasses, to_config)

    def _authoritative_config(self) -> Obj | None:
        for cdi in self.cdi.list():
            if ANN_CONFIG_AUTHORITY in ((cdi.get("metadata") or {}).get("annotations") or {}):
                return dict((cdi.get("spec") or {}).get("config") or {})
        return None

    async def reconcile(self, key: Key) -> Result | None:
        config = self.cdiconfig.get("", CONFIG_NAME)
        if config is None:
            config = await self.client.create(CDICONFIG, {"apiVersion": CDICONFIG.api_version, "kind": CDICONFIG.kind,
                                                          "metadata": {"name": CONFIG_NAME}, "spec": {}})
        spec = config.get("spec") or {}
        desired = self._authoritative_config()
        if desired is not None and desired != spec:
            config = await self.client.patch(CDICONFIG, CONFIG_NAME,
                                             {"spec": {**{k: None for k in spec if k not in desired}, **desired}})
            spec = config.get("spec") or {}
        classes = self.storageclasses.list()
        current = config.get("status") or {}
        glob = ((spec.get("filesystemOverhead") or {}).get("global"))
        if glob and not OVERHEAD_RE.match(str(glob)):  # repeats aggregate into one event's count
            await self.events.event(config, "Warning", "InvalidFilesystemOverhead",
                                    f"invalid global filesystem overhead {glob!r}: must be a number between 0 and 1 "
                                    f"with at most 3 decimals; using the default {DEFAULT_OVERHEAD}")
        try:
            status = compute_status(spec, classes, current, self.upload_proxy_url)
        except Terminal as exc:
            await self.events.event(config, "Warning", exc.reason, exc.message)
            raise
        if status != current:
            await self.client.patch_status(CDICONFIG, CONFIG_NAME, status)
        return None
