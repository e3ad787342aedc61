"""CPU and memory limits for pod containers, with cgroup v1 or v2, where the host lets us write them.

Upstream: kubelet's cgroup manager (pkg/kubelet/cm) maps requests/limits to cpu.shares /
cpu.cfs_quota_us / memory.limit_in_bytes (v1) or cpu.weight / cpu.max / memory.max (v2). Each
container gets `vdisk/<pod-uid>/<container>` below the hierarchy; the shim joins it before exec, so
everything the container starts is inside. Where cgroups are not writable (no root), limits are not
applied and the pod still runs; the node logs that once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..quantity import Quantity, QuantityError

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
PERIOD = 100_000


def _milli(value: str | int | None) -> int:
    if value is None:
        return 0
    try:
        return int(Quantity.parse(value).value * 1000)
    except QuantityError:
        return 0


def _bytes(value: str | int | None) -> int:
    if value is None:
        return 0
    try:
        return Quantity.parse(value).bytes
    except QuantityError:
        return 0


def version() -> int:
    if (ROOT / "cgroup.controllers").exists():
        return 2
    if (ROOT / "memory").is_dir():
        return 1
    return 0


class ContainerCgroups:
    def __init__(self, pod_uid: str, container: str, resources: dict[str, dict[str, str]]):
        self.rel = Path("vdisk") / pod_uid / container
        self.resources = resources
        self.paths: list[Path] = []
        self.version = version()

    def create(self) -> list[str]:
        """Create the cgroups and write the limits; returns the directories the process must join."""
        if self.version == 0 or not os.access(ROOT, os.W_OK):
            return []
        req, lim = self.resources.get("requests") or {}, self.resources.get("limits") or {}
        cpu_req = _milli(req.get("cpu")) or _milli(lim.get("cpu"))
        cpu_lim, mem_lim = _milli(lim.get("cpu")), _bytes(lim.get("memory"))
        try:
            if self.version == 1:
                cpu = ROOT / "cpu" / self.rel
                mem = ROOT / "memory" / self.rel
                for p in (cpu, mem):
                    p.mkdir(parents=True, exist_ok=True)
                    self.paths.append(p)
                if cpu_req:
                    (cpu / "cpu.shares").write_text(str(max(2, cpu_req * 1024 // 1000)))
                if cpu_lim:
                    (cpu / "cpu.cfs_period_us").write_text(str(PERIOD))
                    (cpu / "cpu.cfs_quota_us").write_text(str(max(1000, cpu_lim * PERIOD // 1000)))
                if mem_lim:
                    (mem / "memory.limit_in_bytes").write_text(str(mem_lim))
            else:
                base = ROOT / self.rel
                base.mkdir(parents=True, exist_ok=True)
                self.paths.append(base)
                if cpu_req:
                    (base / "cpu.weight").write_text(str(max(1, min(10000, 1 + (cpu_req * 1024 // 1000 - 2) * 9999
                                                                   // 262142))))
                if cpu_lim:
                    (base / "cpu.max").write_text(f"{max(1000, cpu_lim * PERIOD // 1000)} {PERIOD}")
                if mem_lim:
                    (base / "memory.max").write_text(str(mem_lim))
        except OSError as exc:
            log.warning("cgroup limits not applied container=%s error=%s", self.rel, exc)
        return [str(p) for p in self.paths]

    def oom_killed(self) -> bool:
        for p in self.paths:
            for name, marker in (("memory.oom_control", "oom_kill "), ("memory.events", "oom_kill ")):
                f = p / name
                if f.exists():
                    for line in f.read_text().splitlines():
                        if line.startswith(marker) and int(line.split()[1]) > 0:
                            return True
            f = p / "memory.failcnt"
            if f.exists() and (p / "memory.limit_in_bytes").exists() and int(f.read_text() or 0) > 0:
                return True
        return False

    def remove(self) -> None:
        for p in self.paths:
            for d in (p, p.parent):
                try:
                    d.rmdir()
                except OSError:
                    pass
        self.paths = []
