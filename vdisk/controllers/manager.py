"""Starts the controllers against one API server (vdisk's own, or a cluster's) and runs them until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from .cdiconfig import CDIConfigController
from .client import (
    CDI,
    CDICONFIG,
    DATAVOLUME,
    HOSTPATHPROVISIONER,
    HYPERCONVERGED,
    NODE,
    POD,
    PV,
    PVC,
    RESOURCEQUOTA,
    STORAGECLASS,
    STORAGEPROFILE,
    VOLUMESNAPSHOTCLASS,
    Client,
    Kind,
)
from .datavolume import DataVolumeController
from .hostpathprovisioner import HostPathProvisionerController
from .hyperconverged import HCO_NAMESPACE, HyperConvergedController
from .importpod import ImportPodController
from .nodelifecycle import NodeLifecycleController
from .persistentvolume import PersistentVolumeController
from .protection import ProtectionController
from .resourcequota import ResourceQuotaController
from .runtime import Controller, EventRecorder, Informer
from .scheduler import Scheduler
from .storageprofile import StorageProfileController
from .uploadpod import UploadPodController

log = logging.getLogger(__name__)


class Informers:
    """One shared informer per kind (and namespace), as client-go's SharedInformerFactory."""

    def __init__(self, client: Client):
        self.client = client
        self._by_kind: dict[tuple[Kind, str | None], Informer] = {}

    def get(self, kind: Kind, namespace: str | None = None) -> Informer:
        key = (kind, namespace)
        if key not in self._by_kind:
            self._by_kind[key] = Informer(self.client, kind, namespace)
        return self._by_kind[key]

    def all(self) -> list[Informer]:
        return list(self._by_kind.values())


def build_controllers(client: Client, informers: Informers, upload_proxy_url: str = "") -> list[Controller]:
    events = EventRecorder(client, "vdisk-controllers")
    cdi = EventRecorder(client, "datavolume-import-controller")
    cdi_upload = EventRecorder(client, "datavolume-upload-controller")
    i = informers.get
    pv = PersistentVolumeController(client, i(PVC), i(PV), i(STORAGECLASS), i(NODE),
                                    EventRecorder(client, "persistentvolume-controller"))
    protection = ProtectionController(client, i(PVC), i(PV), i(POD))
    grace = float(os.environ.get("VDISK_NODE_MONITOR_GRACE", "40"))
    return [
        HyperConvergedController(client, i(HYPERCONVERGED, HCO_NAMESPACE), i(CDI)).controller,
        CDIConfigController(client, i(CDICONFIG), i(CDI), i(STORAGECLASS), events, upload_proxy_url).controller,
        pv.claims, pv.volumes, protection.claims, protection.volumes,
        Scheduler(client, i(POD), i(NODE), i(PVC), i(PV), i(STORAGECLASS),
                  EventRecorder(client, "default-scheduler")).controller,
        NodeLifecycleController(client, i(NODE), grace).controller,
        ResourceQuotaController(client, i(RESOURCEQUOTA), i(POD), i(PVC)).controller,
        HostPathProvisionerController(client, i(HOSTPATHPROVISIONER), i(NODE), i(PVC),
                                      EventRecorder(client, "hostpath-provisioner-operator")).controller,
        StorageProfileController(client, i(STORAGEPROFILE), i(STORAGECLASS), i(VOLUMESNAPSHOTCLASS), cdi).controller,
        DataVolumeController(client, i(DATAVOLUME), i(PVC), i(POD), i(STORAGECLASS), i(STORAGEPROFILE),
                             i(CDICONFIG), cdi, cdi_upload).controller,
        ImportPodController(client, i(PVC), i(POD), i(STORAGECLASS), i(CDICONFIG), cdi).controller,
        UploadPodController(client, i(PVC), i(POD), i(STORAGECLASS), i(CDICONFIG), cdi_upload).controller,
    ]


async def run_controllers(kubeconfig: Path, stop: asyncio.Event, upload_proxy_url: str = "") -> None:
    """`upload_proxy_url`: where the upload proxy answers (vdisk's API server serves it on its own port)."""
    client = Client(kubeconfig, field_manager="vdisk-controllers")
    informers = Informers(client)
    controllers = build_controllers(client, informers, upload_proxy_url)
    try:
        async with asyncio.TaskGroup() as tg:
            for inf in informers.all():
                tg.create_task(inf.run())
            # client-go's WaitForCacheSync: a reconcile against a half-filled cache decides wrongly (a
            # claim rendered with a default overhead, an importer started again for a finished claim)
            try:
                async with asyncio.timeout(60):
                    await asyncio.gather(*(inf.synced.wait() for inf in informers.all()))
            except TimeoutError:
                log.warning("informer caches not synced after 60 s; starting controllers anyway")
            for c in controllers:
                tg.create_task(c.run())
            log.info("controllers running count=%d", len(controllers))
            await stop.wait()
            raise _Stop()
    except* _Stop:
        pass
    finally:
        with contextlib.suppress(Exception):
            await client.close()


class _Stop(Exception):
    pass
