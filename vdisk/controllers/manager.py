"""Starts the controllers against one API server (vdisk's own, or a cluster's) and runs them until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from .cdiconfig import CDIConfigController
from .client import CDI, CDICONFIG, HYPERCONVERGED, STORAGECLASS, Client, Kind
from .hyperconverged import HCO_NAMESPACE, HyperConvergedController
from .runtime import EventRecorder, Informer

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


async def run_controllers(kubeconfig: Path, stop: asyncio.Event) -> None:
    client = Client(kubeconfig, field_manager="vdisk-controllers")
    informers = Informers(client)
    events = EventRecorder(client, "vdisk-controllers")
    controllers = [
        HyperConvergedController(client, informers.get(HYPERCONVERGED, HCO_NAMESPACE), informers.get(CDI)).controller,
        CDIConfigController(client, informers.get(CDICONFIG), informers.get(CDI), informers.get(STORAGECLASS),
                            events).controller,
    ]
    try:
        async with asyncio.TaskGroup() as tg:
            for inf in informers.all():
                tg.create_task(inf.run())
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
