"""A two-node vdisk on this machine: `vdisk up` (node00) and `vdisk node` (node01), each with its own host root."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, Kubectl, VdiskProcess, kubectl_binaries, start_vdisk, wait_for


@dataclass
class Cluster:
    server: VdiskProcess
    roots: dict[str, Path]
    node01: subprocess.Popen[bytes]
    node01_log: Path
    tmp: Path

    def kubectl(self, namespace: str | None = None) -> Kubectl:
        cache = Path(tempfile.mkdtemp(prefix="kubectl-cache-", dir=self.tmp))
        return Kubectl(kubectl_binaries()[0], self.server.kubeconfig, cache, namespace)

    def host_path(self, node: str, path: str) -> Path:
        return self.roots[node] / path.lstrip("/")

    def start_node01(self) -> None:
        self.node01 = start_node(self.server, "node01", self.roots["node01"], self.node01_log)

    def stop_node01(self, sig: int = 2) -> None:
        if self.node01.poll() is None:
            self.node01.send_signal(sig)
            try:
                self.node01.wait(30)
            except subprocess.TimeoutExpired:
                self.node01.kill()
                self.node01.wait()


def start_node(server: VdiskProcess, name: str, root: Path, log: Path) -> subprocess.Popen[bytes]:
    data = root / "var" / "lib" / "vdisk"
    proc = subprocess.Popen([sys.executable, "-m", "vdisk.cli.main", "node", "--server", server.url,
                             f"--token={server.token}", "--name", name, "--host-root", str(root), "--data-dir", str(data),
                             "--certificate-authority", str(server.ca), "--pod-restart-backoff", "0.3"],
                            cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "VDISK_NODE_HEARTBEAT": "1"})
    return proc


def node_ready(k: Kubectl, name: str) -> bool:
    res = k.run("get", "node", name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
    return res.stdout.strip() == "True"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    roots = {"node00": tmp / "node00-root", "node01": tmp / "node01-root"}
    for r in roots.values():
        r.mkdir()
    server = start_vdisk(tmp / "data", "--node-name", "node00", "--host-root", str(roots["node00"]),
                         "--pod-restart-backoff", "0.3",
                         env={"VDISK_NODE_MONITOR_GRACE": "4", "VDISK_NODE_HEARTBEAT": "1"})
    log = tmp / "node01.log"
    node01 = start_node(server, "node01", roots["node01"], log)
    c = Cluster(server, roots, node01, log, tmp)
    k = c.kubectl()
    try:
        wait_for(lambda: node_ready(k, "node00") and node_ready(k, "node01"), timeout=30, what="both nodes Ready")
        yield c
    finally:
        c.stop_node01()
        server.stop()
        leftover = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True)
        for line in leftover.stdout.splitlines():
            if str(tmp) in line:  # never leave a loop device of ours behind on a shared machine
                subprocess.run(["losetup", "-d", line.split()[0]], check=False)
        for mnt in sorted((line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                           if str(tmp) in line.split()[1]), reverse=True):
            subprocess.run(["umount", "-l", mnt], check=False)
        # the directory itself stays for post-mortems (pytest keeps the last few runs)


def pod_logs_when_done(k: Kubectl, name: str, timeout: float = 30) -> str:
    wait_for(lambda: k.json("get", "pod", name)["status"].get("phase") in ("Succeeded", "Failed"), timeout=timeout,
             what=f"pod {name} finished")
    return k("logs", name)


__all__ = ["Cluster", "cluster", "node_ready", "os", "pod_logs_when_done", "time"]


@contextmanager
def example14_loop_device(cluster: Cluster) -> Iterator[Path]:
    """The seed's recipe for example 14 on node01: a 2 GiB file made with dd, attached with losetup, seen
    by node01 as /dev/loop10 (a link to whichever device `losetup -f` gave); detached afterwards."""
    backing = cluster.host_path("node01", "/var/loop10.img")
    backing.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dd", "if=/dev/zero", f"of={backing}", "bs=1M", "count=0", "seek=2048"], check=True,
                   capture_output=True)
    dev = subprocess.run(["losetup", "-f", "--show", str(backing)], check=True, capture_output=True,
                         text=True).stdout.strip()
    link = cluster.host_path("node01", "/dev/loop10")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(dev)
    try:
        yield Path(dev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
