"""The storage pools of one node: where volumes live, whether they are usable, how full they are.

A pool is a directory whose `csi/` subdirectory holds one directory per volume, `csi/<pv-name>`, as
the HPP CSI driver lays them out (HPP pkg/hostpath). A Filesystem volume is that directory; a Block
volume is a sparse `block.img` in it, attached to a loop device while the node runs.

Pools come from three places:
- the built-in pool `local` under the node's data dir (offered by every node, not part of the CR);
- the pseudo-pool of the `vdisk.io/local-block` provisioner, also under the data dir;
- the HostPathProvisioner CR's `storagePools` when the node matches `workload.nodeSelector`; their
  paths are host paths, read below the node's host root (`/` for the node vdisk runs itself).
A pool on the filesystem of `/` works but is reported (R2), as HPP's HPPSharingPoolPathWithOS alert does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..storage import LOCAL_BLOCK_POOL, PoolState
from . import host

Obj = dict[str, Any]

BUILTIN_POOL = "local"
BLOCK_IMAGE = "block.img"


@dataclass
class Pool:
    name: str
    path: Path  # the pool directory as this process sees it
    source: str  # "builtin", "local-block" or "hpp"
    template: Obj | None = None  # the HPP pvcTemplate, for pools backed by a claim
    error: str = ""
    mounted: bool = True  # template pools are usable only once their claim is mounted at csi/
    allocated: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def volumes_dir(self) -> Path:
        return self.path / "csi"

    def volume_dir(self, pv_name: str) -> Path:
        return self.volumes_dir / pv_name

    def state(self) -> PoolState:
        ready = not self.error and self.mounted
        message = self.error or ("" if self.mounted else "waiting for the pool claim to be bound and mounted")
        shared = False
        capacity = available = 0
        if ready:
            try:
                shared = host.shares_device_with_root(self.volumes_dir)
                u = host.usage(self.volumes_dir)
                capacity, available = u.capacity, u.available
            except OSError as exc:
                ready, message = False, f"cannot read pool path {self.path}: {exc.strerror}"
        if ready and shared and self.source == "hpp":
            message = (f"storage pool {self.name} at {self.path} shares the filesystem of the operating system; "
                       "volumes can fill it and make the node unusable")
        return PoolState(self.name, str(self.path), ready, capacity, self.allocated, available, shared, message)


def check_pool_path(name: str, path_text: str) -> str:
    """Why an HPP pool path cannot be used, or "" (webhook rules are checked at admission)."""
    if not path_text.startswith("/"):
        return f"storage pool {name}: path {path_text!r} is not absolute"
    return ""


def prepare(pool: Pool) -> None:
    """Create the pool's volume directory and check that it is writable; record why not in pool.error."""
    if pool.error:
        return
    try:
        pool.volumes_dir.mkdir(parents=True, exist_ok=True)
        probe = pool.volumes_dir / f".vdisk-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        pool.error = f"storage pool {pool.name}: path {pool.path} is not writable: {exc.strerror or exc}"


def builtin_pools(data_dir: Path) -> list[Pool]:
    return [Pool(BUILTIN_POOL, data_dir / "pools" / BUILTIN_POOL, "builtin"),
            Pool(LOCAL_BLOCK_POOL, data_dir / "block", "local-block")]
