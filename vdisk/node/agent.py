"""The node agent: what kubelet, the HPP CSI node plugin and its sidecars do, for one host.

It registers its Node and keeps it Ready with heartbeats, offers storage pools (reported in the Node
annotation `vdisk.io/storage-pools`), provisions, deletes and expands volumes for claims assigned to
it, mounts HostPathProvisioner template pools, and runs the Pods bound to it (pods.py). It talks to
the API server only through the Kubernetes API, so any number of agents can join one server:

    vdisk node --server https://127.0.0.1:6443 --token T --name node01 --data-dir DIR [--host-root DIR]

`--host-root` is where this node's host paths live (HPP pool paths, local PV paths); it is `/` for the
node `vdisk up` runs, and a directory for extra nodes on the same machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..controllers.client import CDICONFIG, HOSTPATHPROVISIONER, NODE, PV, PVC, STORAGECLASS, ApiError, Client
from ..controllers.runtime import Controller, EventRecorder, Informer, Key, Result, key_of, now_rfc3339
from ..quantity import format_bytes
from ..storage import (
    ANN_KUBELET_TOKEN,
    ANN_POOLS,
    ANN_TEMPLATE_MOUNTS,
    HPP_NAMESPACE,
    LABEL_HOSTNAME,
    OUR_PROVISIONERS,
    PROVISIONER_FINALIZER,
    annotations_of,
    claim_class,
    claim_request,
    meta,
    node_matches_workload,
    pool_of_class,
    template_claim_name,
    volume_capacity,
    volume_mode,
)
from . import host
from .pools import Pool, builtin_pools, check_pool_path, prepare
from .volumes import (
    TOPOLOGY_KEY,
    VolumeStore,
    allocated_by_pool,
    claim_wants_us,
    desired_pv,
    provisioning_problem,
    pv_name_for,
    pv_node,
    pv_pool,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass
class NodeConfig:
    name: str
    data_dir: Path
    host_root: Path = Path("/")
    # seconds between heartbeats; VDISK_NODE_HEARTBEAT shortens it where the node-monitor grace is short (tests)
    heartbeat: float = field(default_factory=lambda: float(os.environ.get("VDISK_NODE_HEARTBEAT", "10")))
    address: str = "127.0.0.1"
    roles: tuple[str, ...] = ()
    restart_backoff: float = 10.0  # kubelet's first container restart back-off


class NodeAgent:
    def __init__(self, client: Client, config: NodeConfig):
        self.client = client
        self.config = config
        self.name = config.name
        self.data_dir = config.data_dir
        self.kubelet_token = secrets.token_hex(24)
        self.events = EventRecorder(client, "kubevirt.io.hostpath-provisioner", config.name)
        self.pvcs = Informer(client, PVC)
        self.pvs = Informer(client, PV)
        self.classes = Informer(client, STORAGECLASS)
        self.hpps = Informer(client, HOSTPATHPROVISIONER)
        self.nodes = Informer(client, NODE)
        self.cdiconfig = Informer(client, CDICONFIG)
        self.pools: dict[str, Pool] = {}
        self.volumes = VolumeStore(self.pools, config.host_root)
        self._published = ""
        self._template_mounts: dict[str, Path] = {}
        self.claims = Controller(f"node-{self.name}-claims", self.sync_claim, workers=2)
        self.volume_ctl = Controller(f"node-{self.name}-volumes", self.sync_volume, workers=2)
        self.pool_ctl = Controller(f"node-{self.name}-pools", self.sync_pools)
        self.claims.watch(self.pvcs)
        self.claims.watch(self.pvs, _claim_of_pv)
        self.claims.watch(self.classes, lambda o: [key_of(c) for c in self.pvcs.list() if claim_wants_us(c, self.name)])
        self.volume_ctl.watch(self.pvs)
        self.volume_ctl.watch(self.pvcs, lambda o: [("", str((o.get("spec") or {}).get("volumeName")))]
                              if (o.get("spec") or {}).get("volumeName") else [])
        pools_key = lambda o: [("", "pools")]  # noqa: E731
        self.pool_ctl.watch(self.hpps, pools_key)
        self.pool_ctl.watch(self.pvcs, lambda o: [("", "pools")] if meta(o).get("name", "").startswith("hpp-pool-")
                            else [])
        # Volumes come and go by the hundred: recount pools at most once a second, not per PV event.
        self.pvs.add_handler(lambda typ, o, old: self.pool_ctl.queue.add_after(("", "pools"), 1.0))
        self.extra_tasks: list[Any] = []

    # --- registration -------------------------------------------------------------------------------------

    def node_object(self, kubelet_port: int) -> Obj:
        cpu = os.cpu_count() or 1
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        disk = host.usage(self.data_dir)
        labels = {LABEL_HOSTNAME: self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", TOPOLOGY_KEY: self.name}
        for role in self.config.roles:
            labels[f"node-role.kubernetes.io/{role}"] = ""
        capacity = {"cpu": str(cpu), "memory": f"{mem // 1024}Ki", "ephemeral-storage": format_bytes(disk.capacity),
                    "pods": "110"}
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": labels,
                         "annotations": {ANN_KUBELET_TOKEN: self.kubelet_token,
                                         "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {},
            "status": {
                "capacity": capacity, "allocatable": capacity,
                "addresses": [{"type": "InternalIP", "address": self.config.address},
                              {"type": "Hostname", "address": self.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
                "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kernelVersion": platform.release(),
                             "osImage": _os_image(), "containerRuntimeVersion": f"vdisk://{__version__}",
                             "kubeletVersion": "v1.32.0-vdisk", "kubeProxyVersion": "", "machineID": _machine_id(),
                             "systemUUID": "", "bootID": _boot_id()},
                "conditions": self._conditions(),
            },
        }

    def _conditions(self) -> list[Obj]:
        now = now_rfc3339()
        disk_full = False
        try:
            u = host.usage(self.data_dir)
            disk_full = u.available < 0.05 * u.capacity
        except OSError:
            pass
        conds = [("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                 ("DiskPressure", "True" if disk_full else "False",
                  "KubeletHasDiskPressure" if disk_full else "KubeletHasNoDiskPressure",
                  "kubelet has disk pressure" if disk_full else "kubelet has no disk pressure"),
                 ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                 ("Ready", "True", "KubeletReady", "kubelet is posting ready status")]
        return [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now,
                 "lastTransitionTime": now} for t, s, r, m in conds]

    async def register(self, kubelet_port: int) -> None:
        desired = self.node_object(kubelet_port)
        existing = await self.client.get(NODE, self.name)
        if existing is None:
            status = desired.pop("status")
            await self.client.create(NODE, desired)
            await self.client.patch_status(NODE, self.name, status)
        else:
            await self.client.patch(NODE, self.name, {"metadata": {"labels": desired["metadata"]["labels"],
                                                                   "annotations": desired["metadata"]["annotations"]}})
            status = desired["status"]
            old = {c["type"]: c for c in (existing.get("status") or {}).get("conditions") or []}
            for c in status["conditions"]:
                if old.get(c["type"], {}).get("status") == c["status"]:
                    c["lastTransitionTime"] = old[c["type"]].get("lastTransitionTime", c["lastTransitionTime"])
            await self.client.patch_status(NODE, self.name, status)
        log.info("node registered name=%s host_root=%s", self.name, self.config.host_root)

    async def heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat)
            try:
                node = await self.client.get(NODE, self.name)
                if node is None:  # deleted by someone: register again, as kubelet does
                    await self.register(self.kubelet_port)
                    continue
                old = {c["type"]: c for c in (node.get("status") or {}).get("conditions") or []}
                conds = self._conditions()
                for c in conds:
                    if old.get(c["type"], {}).get("status") == c["status"]:
                        c["lastTransitionTime"] = old[c["type"]].get("lastTransitionTime", c["lastTransitionTime"])
                await self.client.patch_status(NODE, self.name, {"conditions": conds})
            except Exception as exc:  # the API server may be restarting; keep beating
                log.warning("heartbeat failed node=%s error=%s", self.name, exc)

    # --- pools --------------------------------------------------------------------------------------------

    def _hpp(self) -> Obj | None:
        items = [h for h in self.hpps.list() if not meta(h).get("deletionTimestamp")]
        return items[0] if items else None

    async def sync_pools(self, key: Key) -> Result | None:
        pools = {p.name: p for p in builtin_pools(self.data_dir)}
        me = self.nodes.get("", self.name) or {"metadata": {"name": self.name, "labels": {}}}
        hpp = self._hpp()
        wanted_mounts: dict[str, Obj] = {}
        if hpp is not None and node_matches_workload(hpp, me):
            for sp in (hpp.get("spec") or {}).get("storagePools") or []:
                name, path_text = sp.get("name", ""), sp.get("path", "")
                error = check_pool_path(name, path_text)
                pool = Pool(name, self.volumes.host_path(path_text) if not error else Path(path_text), "hpp",
                            template=sp.get("pvcTemplate"), error=error)
                if pool.template is not None and not error:
                    wanted_mounts[name] = sp
                    pool.mounted = await self._mount_template_pool(pool)
                pools[name] = pool
        for name in list(self._template_mounts):
            if name not in wanted_mounts:
                await self._unmount_template_pool(name)
        for pool in pools.values():
            if pool.mounted:
                prepare(pool)
        allocated = allocated_by_pool(self.pvs.list(), self.name)
        for pool in pools.values():
            pool.allocated = allocated.get(pool.name, 0)
        self.pools.clear()
        self.pools.update(pools)
        await self.publish_pools()
        return Result(requeue_after=30)

    async def _mount_template_pool(self, pool: Pool) -> bool:
        claim = self.pvcs.get(HPP_NAMESPACE, template_claim_name(pool.name, self.name))
        if claim is None or (claim.get("status") or {}).get("phase") != "Bound":
            return False
        pv = self.pvs.get("", (claim.get("spec") or {}).get("volumeName", ""))
        if pv is None or pv_node(pv) not in (self.name, None):
            return False
        target = pool.volumes_dir
        if host.is_mountpoint(target):
            self._template_mounts[pool.name] = target
            return True
        try:
            kind, source = await self.volumes.resolve(pv)
            if kind == "block":
                if not await host.has_filesystem(source):
                    log.info("formatting template pool pool=%s device=%s", pool.name, source)
                    await host.make_xfs(source)
                await host.mount(source, target)
            else:
                await host.mount(source, target, "bind")
        except (host.HostError, LookupError, OSError) as exc:
            pool.error = f"storage pool {pool.name}: cannot mount claim {meta(claim)['name']}: {exc}"
            return False
        self._template_mounts[pool.name] = target
        log.info("template pool mounted pool=%s target=%s", pool.name, target)
        return True

    async def _unmount_template_pool(self, name: str) -> None:
        target = self._template_mounts.pop(name, None)
        if target is not None:
            try:
                await host.umount(target)
                log.info("template pool unmounted pool=%s target=%s", name, target)
            except host.HostError as exc:
                log.warning("cannot unmount template pool pool=%s error=%s", name, exc)
                self._template_mounts[name] = target

    async def publish_pools(self) -> None:
        states = [p.state().to_json() for p in sorted(self.pools.values(), key=lambda p: p.name)]
        text = json.dumps(states, sort_keys=True)
        mounts = ",".join(sorted(self._template_mounts))
        if text + mounts == self._published:
            return
        await self.client.patch(NODE, self.name, {"metadata": {"annotations": {ANN_POOLS: text,
                                                                               ANN_TEMPLATE_MOUNTS: mounts}}})
        self._published = text + mounts

    # --- claims: provisioning and expansion ---------------------------------------------------------------

    async def sync_claim(self, key: Key) -> Result | None:
        pvc = self.pvcs.get(*key)
        if pvc is None:
            return None
        if claim_wants_us(pvc, self.name):
            return await self._provision(pvc)
        return await self._maybe_expand(pvc)

    async def _provision(self, pvc: Obj) -> Result | None:
        ns, name = key_of(pvc)
        pv_name = pv_name_for(pvc)
        if self.pvs.get("", pv_name) is not None:
            return None  # already provisioned; the binder finishes the job
        sc = self.classes.get("", claim_class(pvc))
        problem = provisioning_problem(pvc, sc, self.pools)
        if problem:
            cls = claim_class(pvc)
            await self.events.event(pvc, "Warning", "ProvisioningFailed",
                                    f'failed to provision volume with StorageClass "{cls}": {problem}')
            return Result(requeue_after=15)
        assert sc is not None
        pool = self.pools[pool_of_class(sc)]
        await self.events.event(pvc, "Normal", "Provisioning",
                                f'External provisioner is provisioning volume for claim "{ns}/{name}"')
        size = claim_request(pvc)
        vdir = await self.volumes.create(pool, pv_name, volume_mode(pvc), size)
        host_path = self.volumes.as_host_path(vdir / "device") if sc.get("provisioner") != \
            "kubevirt.io.hostpath-provisioner" else None
        pool.allocated += size
        try:
            await self.client.create(PV, desired_pv(pvc, sc, self.name, pool, host_path))
        except ApiError as exc:
            if exc.status.code != 409:
                raise
        await self.events.event(pvc, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}")
        log.info("provisioned claim=%s/%s volume=%s pool=%s size=%d", ns, name, pv_name, pool.name, size)
        return None

    async def _maybe_expand(self, pvc: Obj) -> Result | None:
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
            return None
        pv = self.pvs.get("", pv_name)
        if pv is None or pv_node(pv) != self.name or pv_pool(pv) is None:
            return None
        want, have = claim_request(pvc), volume_capacity(pv)
        if want <= have:
            return await self._finish_expansion(pvc, pv)
        ns, name = key_of(pvc)
        pool = self.pools.get(pv_pool(pv) or "")
        if pool is None:
            return Result(requeue_after=10)
        state = pool.state()
        if want - have > state.free:
            msg = (f"not enough space in storage pool {pool.name} to grow {pv_name} to {format_bytes(want)}: "
                   f"{format_bytes(state.free)} free")
            await self.events.event(pvc, "Warning", "VolumeResizeFailed", msg)
            return Result(requeue_after=30)
        await self.client.patch_status(PVC, name, {"conditions": [{
            "type": "Resizing", "status": "True", "lastTransitionTime": now_rfc3339(), "lastProbeTime": None}]},
            namespace=ns)
        await self.events.event(pvc, "Normal", "Resizing", f'External resizer is resizing volume {pv_name}')
        await self.volumes.expand(pool, pv_name, volume_mode(pv), want, self._overhead(claim_class(pvc), pv))
        pv = await self.client.patch(PV, pv_name, {"spec": {"capacity": {"storage": format_bytes(want)}}})
        pool.allocated += want - have
        log.info("expanded volume=%s from=%d to=%d", pv_name, have, want)
        await self.events.event(pvc, "Normal", "VolumeResizeSuccessful",
                                "Resize volume succeeded" if volume_mode(pv) == "Block" else
                                f'MountVolume.NodeExpandVolume succeeded for volume "{pv_name}"')
        return await self._finish_expansion(pvc, pv)

    async def _finish_expansion(self, pvc: Obj, pv: Obj) -> Result | None:
        ns, name = key_of(pvc)
        status = pvc.get("status") or {}
        cap = (pv.get("spec") or {}).get("capacity") or {}
        if status.get("capacity") == cap and not status.get("conditions"):
            return None
        await self.client.patch_status(PVC, name, {"capacity": cap, "conditions": None,
                                                   "allocatedResources": {"storage": cap.get("storage")}},
                                       namespace=ns)
        return None

    def _overhead(self, class_name: str, pv: Obj) -> float:
        if volume_mode(pv) == "Block":
            return 0.0
        cfg = self.cdiconfig.get("", "config") or {}
        fo = (cfg.get("status") or {}).get("filesystemOverhead") or {}
        value = (fo.get("storageClass") or {}).get(class_name) or fo.get("global") or "0.055"
        try:
            return float(value)
        except ValueError:
            return 0.055

    # --- volumes: reclaim ---------------------------------------------------------------------------------

    async def sync_volume(self, key: Key) -> Result | None:
        """Released + Delete: remove the data, then the PV. A PV deleted while unbound: data per its policy."""
        pv = self.pvs.get(*key)
        if pv is None or pv_node(pv) != self.name or pv_pool(pv) is None:
            return None
        if annotations_of(pv).get("pv.kubernetes.io/provisioned-by") not in OUR_PROVISIONERS:
            return None
        name = key[1]
        phase = (pv.get("status") or {}).get("phase")
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy")
        deleting = bool(meta(pv).get("deletionTimestamp"))
        if phase == "Bound" or not (deleting or (phase == "Released" and policy == "Delete")):
            return None  # in use (pv-protection holds a deleted one), or nothing to do
        if policy == "Delete":
            pool = self.pools.get(pv_pool(pv) or "")
            if pool is None:
                return Result(requeue_after=10)
            await self.volumes.delete(pool, name)
            log.info("deleted volume data volume=%s pool=%s", name, pool.name)
        if deleting:
            await self._drop_finalizer(pv)  # Retain: the PV object goes, the data stays (as HPP keeps the dir)
        else:
            await self.client.delete(PV, name)
        return None

    async def _drop_finalizer(self, pv: Obj) -> None:
        fins = meta(pv).get("finalizers") or []
        if PROVISIONER_FINALIZER in fins:
            await self.client.patch(PV, meta(pv)["name"], {"metadata": {
                "finalizers": [f for f in fins if f != PROVISIONER_FINALIZER],
                "resourceVersion": meta(pv)["resourceVersion"]}})

    # --- start-up reconciliation ----------------------------------------------------------------------------

    async def reconcile_on_start(self) -> None:
        """Re-attach Block volumes, and remove volume directories nobody owns (a crash between creating
        a directory and its PV leaves one; the claim, if it still wants a volume, gets it again)."""
        known = {meta(pv)["name"] for pv in self.pvs.list()}
        wanted = {pv_name_for(c) for c in self.pvcs.list() if claim_wants_us(c, self.name)}
        for pool in self.pools.values():
            if not pool.volumes_dir.is_dir() or not pool.mounted:
                continue
            for vdir in pool.volumes_dir.iterdir():
                if not vdir.name.startswith("pvc-") or not vdir.is_dir():
                    continue
                if vdir.name in known:
                    if (vdir / "block.img").exists():
                        await self.volumes.device(pool, vdir.name)
                elif vdir.name not in wanted:
                    log.warning("removing orphan volume directory path=%s", vdir)
                    await self.volumes.delete(pool, vdir.name)

    async def release_devices(self) -> None:
        """On stop: unmount template pools and detach the loop devices this node attached."""
        for name in list(self._template_mounts):
            await self._unmount_template_pool(name)
        for pool in self.pools.values():
            if pool.volumes_dir.is_dir() and pool.mounted:
                for image in pool.volumes_dir.glob("pvc-*/block.img"):
                    await host.detach_loop(image)

    # --- run ----------------------------------------------------------------------------------------------

    kubelet_port = 0

    async def run(self, stop: asyncio.Event) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        from .kubelet import KubeletServer

        server = KubeletServer(self)
        self.kubelet_port = await server.start(self.config.address)
        await self.register(self.kubelet_port)
        informers = [self.pvcs, self.pvs, self.classes, self.hpps, self.nodes, self.cdiconfig]
        try:
            async with asyncio.TaskGroup() as tg:
                for inf in informers:
                    tg.create_task(inf.run())
                await asyncio.gather(*(inf.synced.wait() for inf in informers))
                await self.sync_pools(("", "pools"))
                await self.reconcile_on_start()
                for c in (self.claims, self.volume_ctl, self.pool_ctl):
                    tg.create_task(c.run())
                tg.create_task(self.heartbeat_loop())
                for factory in self.extra_tasks:
                    tg.create_task(factory())
                log.info("node agent running name=%s", self.name)
                await stop.wait()
                raise _Stop()
        except* _Stop:
            pass
        finally:
            await server.stop()
            await self.release_devices()


class _Stop(Exception):
    pass


def _claim_of_pv(pv: Obj) -> list[Key]:
    ref = (pv.get("spec") or {}).get("claimRef")
    return [(str(ref.get("namespace", "")), str(ref.get("name", "")))] if ref else []


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def _machine_id() -> str:
    try:
        return Path("/etc/machine-id").read_text().strip()
    except OSError:
        return ""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def default_node_name() -> str:
    return socket.gethostname().split(".")[0].lower() or "node"
