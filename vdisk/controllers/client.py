"""The controllers' API client: lightkube underneath, plain dicts on top.

Objects are JSON dicts as the API serves them (unknown fields preserved, exact shapes), reached by a
`Kind` (group, version, kind, plural, scope). Works against vdisk's embedded server or any cluster the
kubeconfig points at. Watches ask for bookmarks so an idle watch can resume without a 410.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.core.generic_client import BasicRequest
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.types import PatchType, on_error_raise

Obj = dict[str, Any]

__all__ = ["ApiError", "Client", "Kind"]


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    status_subresource: bool = True  # without one (e.g. CDIConfig), status is written on the main endpoint

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @functools.cached_property
    def resource(self) -> Any:
        factory = create_namespaced_resource if self.namespaced else create_global_resource
        return factory(self.group, self.version, self.kind, self.plural)


def _plain(obj: Any) -> Obj:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj if type(obj) is dict else dict(obj)
    return obj.to_dict()


class Client:
    def __init__(self, kubeconfig: Path | None = None, *, config: KubeConfig | None = None, field_manager: str = "vdisk"):
        if config is None:
            config = KubeConfig.from_file(str(kubeconfig)) if kubeconfig else KubeConfig.from_env()
        self._lk = AsyncClient(config=config, field_manager=field_manager, trust_env=False)
        self.field_manager = field_manager

    async def close(self) -> None:
        await self._lk.close()

    # --- reads --------------------------------------------------------------------------------------------

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return _plain(await self._lk.get(kind.resource, name, namespace=namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    async def list(self, kind: Kind, namespace: str | None = None, labels: dict[str, Any] | None = None,
                   fields: dict[str, Any] | None = None) -> tuple[list[Obj], str]:
        ns = namespace if kind.namespaced else None
        if kind.namespaced and ns is None:
            from lightkube.core.generic_client import ALL_NS

            ns = ALL_NS
        it = self._lk.list(kind.resource, namespace=ns, labels=labels, fields=fields, chunk_size=500)
        items = [_plain(o) async for o in it]
        return items, it.resourceVersion

    async def watch(self, kind: Kind, namespace: str | None, resource_version: str,
                    timeout: int = 300) -> AsyncIterator[tuple[str, Obj]]:
        """Watch from `resource_version` with bookmarks; raises ApiError (410 when expired)."""
        from lightkube.core.generic_client import ALL_NS, GenericAsyncClient

        ns = namespace if kind.namespaced else None
        if kind.namespaced and ns is None:
            ns = ALL_NS
        inner: GenericAsyncClient = self._lk._client
        br: BasicRequest = inner.prepare_request(
            "list", kind.resource, namespace=ns, watch=True,
            params={"resourceVersion": resource_version, "allowWatchBookmarks": "true", "timeoutSeconds": timeout})

        async for typ, obj in inner.watch(br, on_error=on_error_raise):
            yield typ, _plain(obj)

    # --- writes -------------------------------------------------------------------------------------------

    async def create(self, kind: Kind, obj: Obj, namespace: str | None = None) -> Obj:
        res = kind.resource(obj)
        if kind.namespaced and namespace:
            res["metadata"] = {**(res.get("metadata") or {}), "namespace": namespace}
        return _plain(await self._lk.create(res))

    async def replace(self, kind: Kind, obj: Obj) -> Obj:
        return _plain(await self._lk.replace(kind.resource(obj)))

    async def patch(self, kind: Kind, name: str, patch: Any, namespace: str | None = None,
                    patch_type: PatchType = PatchType.MERGE) -> Obj:
        return _plain(await self._lk.patch(kind.resource, name, patch, namespace=namespace if kind.namespaced else None,
                                           patch_type=patch_type))

    async def patch_status(self, kind: Kind, name: str, status: Obj, namespace: str | None = None) -> Obj:
        res = kind.resource.Status if kind.status_subresource else kind.resource
        return _plain(await self._lk.patch(res, name, {"status": status},
                                           namespace=namespace if kind.namespaced else None,
                                           patch_type=PatchType.MERGE))

    async def replace_status(self, kind: Kind, obj: Obj) -> Obj:
        return _plain(await self._lk.replace(kind.resource.Status(obj)))

    async def delete(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        try:
            await self._lk.delete(kind.resource, name, namespace=namespace if kind.namespaced else None)
        except ApiError as exc:
            if exc.status.code != 404:
                raise


# Kinds the controllers use, with upstream groups and versions.
HYPERCONVERGED = Kind("hco.kubevirt.io", "v1beta1", "HyperConverged", "hyperconvergeds")
CDI = Kind("cdi.kubevirt.io", "v1beta1", "CDI", "cdis", namespaced=False, status_subresource=False)
CDICONFIG = Kind("cdi.kubevirt.io", "v1beta1", "CDIConfig", "cdiconfigs", namespaced=False, status_subresource=False)
STORAGECLASS = Kind("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False)
EVENT = Kind("", "v1", "Event", "events")
PVC = Kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
PV = Kind("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False)
POD = Kind("", "v1", "Pod", "pods")
NODE = Kind("", "v1", "Node", "nodes", namespaced=False)
NAMESPACE = Kind("", "v1", "Namespace", "namespaces", namespaced=False)
RESOURCEQUOTA = Kind("", "v1", "ResourceQuota", "resourcequotas")
CSIDRIVER = Kind("storage.k8s.io", "v1", "CSIDriver", "csidrivers", namespaced=False, status_subresource=False)
HOSTPATHPROVISIONER = Kind("hostpathprovisioner.kubevirt.io", "v1beta1", "HostPathProvisioner",
                           "hostpathprovisioners", namespaced=False, status_subresource=False)
STORAGEPROFILE = Kind("cdi.kubevirt.io", "v1beta1", "StorageProfile", "storageprofiles", namespaced=False)
DATAVOLUME = Kind("cdi.kubevirt.io", "v1beta1", "DataVolume", "datavolumes")
VOLUMESNAPSHOTCLASS = Kind("snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass", "volumesnapshotclasses",
                           namespaced=False, status_subresource=False)
SECRET = Kind("", "v1", "Secret", "secrets", status_subresource=False)
CONFIGMAP = Kind("", "v1", "ConfigMap", "configmaps", status_subresource=False)
