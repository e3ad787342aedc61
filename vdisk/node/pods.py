"""Running the Pods bound to this node as processes: what kubelet does, without a container runtime.

Upstream counterpart: kubelet (pod workers, volume manager, container lifecycle, restart backoff
10 s doubling to 5 min, termination messages, status manager). Each container is a process started
through shim.py in its own mount namespace, in its own cgroups, with the pod's volumes at their mount
paths; its output goes to a log file that `kubectl logs` reads through the node's kubelet endpoint.
Processes are children of the agent: on every exit path they get SIGTERM, a grace period, SIGKILL,
and are waited for.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..controllers.client import CONFIGMAP, POD, PV, PVC, SECRET, ApiError
from ..controllers.runtime import Controller, Informer, Key, Result, key_of, now_rfc3339
from ..dataplane.progress import read_progress
from ..quantity import Quantity, QuantityError
from ..storage import meta
from .cgroups import ContainerCgroups
from .images import ImagePullError, program_for
from .podstatus import ContainerRecord, conditions, pod_phase

if TYPE_CHECKING:
    from .agent import NodeAgent

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_BACKOFF = 300.0
TERMINATION_LIMIT = 4096
PROGRESS_TARGET = "/dev/vdisk-progress"  # where a worker container finds its progress file
ANN_PROGRESS = "vdisk.io/progress"  # the worker's last progress record, published on its pod
PROGRESS_INTERVAL = 1.0


class PodSetupError(Exception):
    """The pod cannot start yet (a volume or a referenced object is missing); reason and message as kubelet's."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def can_isolate() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


class PodWorker:
    """One pod: set up volumes, run init containers then containers, restart per policy, report status."""

    def __init__(self, runner: PodRunner, pod: Obj):
        self.runner = runner
        self.agent = runner.agent
        self.client = runner.agent.client
        self.pod = pod
        self.uid = meta(pod)["uid"]
        self.ns, self.name = key_of(pod)
        self.dir = runner.pods_dir / self.uid
        spec = pod.get("spec") or {}
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.init = [ContainerRecord(c["name"], c.get("image", ""), init=True) for c in spec.get("initContainers") or []]
        self.main = [ContainerRecord(c["name"], c.get("image", "")) for c in spec.get("containers") or []]
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.cgroups: dict[str, ContainerCgroups] = {}
        self.volumes_ready = False
        self.mounts: dict[str, tuple[str, str, bool]] = {}  # volume name -> (kind, source, readOnly)
        self.start_time = now_rfc3339()
        self.stopping = False
        self._status_lock = asyncio.Lock()
        previous = {c.get("name"): c for c in ((pod.get("status") or {}).get("containerStatuses") or []) +
                    ((pod.get("status") or {}).get("initContainerStatuses") or [])}
        for rec in self.init + self.main:
            old = previous.get(rec.name)
            if old:  # the agent restarted: what ran before is gone (kubelet after a node restart)
                rec.restart_count = old.get("restartCount", 0)
                if "running" in (old.get("state") or {}):
                    rec.last_state = {"terminated": {"exitCode": 255, "reason": "Unknown",
                                                     "startedAt": old["state"]["running"].get("startedAt"),
                                                     "finishedAt": now_rfc3339()}}
                    rec.restart_count += 1
                elif "terminated" in (old.get("state") or {}):
                    rec.state = old["state"]
        self.start_time = (pod.get("status") or {}).get("startTime") or self.start_time

    # --- status -------------------------------------------------------------------------------------------

    async def report(self) -> None:
        async with self._status_lock:
            phase = pod_phase(self.restart_policy, self.init, self.main)
            now = now_rfc3339()
            old = self.runner.pods.get(self.ns, self.name) or self.pod
            address = self.agent.config.address
            status: Obj = {
                "phase": phase,
                "conditions": conditions(now, (old.get("status") or {}).get("conditions") or [], self.volumes_ready,
                                         self.init, self.main, phase),
                "hostIP": address, "hostIPs": [{"ip": address}], "podIP": address, "podIPs": [{"ip": address}],
                "startTime": self.start_time,
                "containerStatuses": [c.status() for c in self.main],
                "qosClass": (old.get("status") or {}).get("qosClass", "BestEffort"),
            }
            if self.init:
                status["initContainerStatuses"] = [c.status() for c in self.init]
            try:
                await self.client.patch_status(POD, self.name, status, namespace=self.ns)
            except ApiError as exc:
                if exc.status.code != 404:
                    raise

    # --- volumes ------------------------------------------------------------------------------------------

    async def setup_volumes(self) -> None:
        vol_dir = self.dir / "volumes"
        for vol in (self.pod.get("spec") or {}).get("volumes") or []:
            name = vol["name"]
            if "persistentVolumeClaim" in vol:
                ref = vol["persistentVolumeClaim"]
                claim = self.agent.pvcs.get(self.ns, ref.get("claimName", ""))
                if claim is None:
                    raise PodSetupError("FailedMount", f'persistentvolumeclaim "{ref.get("claimName")}" not found')
                pv_name = (claim.get("spec") or {}).get("volumeName")
                if not pv_name or (claim.get("status") or {}).get("phase") != "Bound":
                    raise PodSetupError("FailedMount", f'persistentvolumeclaim "{meta(claim)["name"]}" is not bound')
                pv = self.agent.pvs.get("", pv_name) or await self.client.get(PV, pv_name)
                if pv is None:
                    raise PodSetupError("FailedMount", f'persistentvolume "{pv_name}" not found')
                try:
                    kind, source = await self.agent.volumes.resolve(pv)
                except (LookupError, OSError) as exc:
                    raise PodSetupError("FailedMount", f'MountVolume.SetUp failed for volume "{name}": {exc}') from exc
                self.mounts[name] = (kind, source, bool(ref.get("readOnly")))
            elif "emptyDir" in vol:
                d = vol_dir / name
                d.mkdir(parents=True, exist_ok=True)
                d.chmod(0o777)
                self.mounts[name] = ("dir", str(d), False)
            elif "hostPath" in vol:
                hp = vol["hostPath"]
                path = self.agent.volumes.host_path(hp["path"])
                if hp.get("type") == "DirectoryOrCreate":
                    path.mkdir(parents=True, exist_ok=True)
                if not path.exists():
                    raise PodSetupError("FailedMount", f'MountVolume.SetUp failed for volume "{name}": hostPath '
                                        f'{hp["path"]} does not exist')
                self.mounts[name] = ("block" if path.is_block_device() else "dir", str(path), False)
            elif "configMap" in vol or "secret" in vol:
                await self._materialize(vol, vol_dir / name)
                self.mounts[name] = ("dir", str(vol_dir / name), True)
            else:
                kinds = ", ".join(k for k in vol if k != "name")
                raise PodSetupError("FailedMount", f'volume "{name}": {kinds} volumes are not supported on vdisk nodes')
        self.volumes_ready = True

    async def _materialize(self, vol: Obj, target: Path) -> None:
        is_secret = "secret" in vol
        src = vol["secret" if is_secret else "configMap"]
        obj_name = src.get("secretName" if is_secret else "name", "")
        obj = await self.client.get(SECRET if is_secret else CONFIGMAP, obj_name, namespace=self.ns)
        if obj is None:
            if src.get("optional"):
                obj = {}
            else:
                kind = "secret" if is_secret else "configmap"
                raise PodSetupError("FailedMount", f'MountVolume.SetUp failed for volume "{vol["name"]}" : '
                                    f'{kind} "{obj_name}" not found')
        data: dict[str, bytes] = {}
        for k, v in (obj.get("data") or {}).items():
            data[k] = base64.b64decode(v) if is_secret else str(v).encode()
        for k, v in (obj.get("binaryData") or {}).items():
            data[k] = base64.b64decode(v)
        items = src.get("items")
        target.mkdir(parents=True, exist_ok=True)
        mode = int(src.get("defaultMode", 0o644))
        chosen = [(i["key"], i.get("path", i["key"]), int(i.get("mode", mode))) for i in items] if items else \
            [(k, k, mode) for k in data]
        for key, path, m in chosen:
            if key not in data:
                continue
            f = target / path
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data[key])
            f.chmod(m)

    # --- containers ---------------------------------------------------------------------------------------

    async def _env(self, c: Obj) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": self.name, "HOME": "/root"}
        for src in c.get("envFrom") or []:
            prefix = src.get("prefix", "")
            ref = src.get("secretRef") or src.get("configMapRef")
            is_secret = "secretRef" in src
            obj = await self.client.get(SECRET if is_secret else CONFIGMAP, (ref or {}).get("name", ""), namespace=self.ns)
            if obj is None:
                if (ref or {}).get("optional"):
                    continue
                raise PodSetupError("CreateContainerConfigError",
                                    f'{"secret" if is_secret else "configmap"} "{(ref or {}).get("name")}" not found')
            for k, v in (obj.get("data") or {}).items():
                env[prefix + k] = base64.b64decode(v).decode(errors="replace") if is_secret else str(v)
        for e in c.get("env") or []:
            if "value" in e or "valueFrom" not in e:
                env[e["name"]] = str(e.get("value", ""))
                continue
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                env[e["name"]] = self._field(vf["fieldRef"].get("fieldPath", ""))
            elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
                is_secret = "secretKeyRef" in vf
                ref = vf["secretKeyRef" if is_secret else "configMapKeyRef"]
                obj = await self.client.get(SECRET if is_secret else CONFIGMAP, ref.get("name", ""), namespace=self.ns)
                data = (obj or {}).get("data") or {}
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        continue
                    what = "secret" if is_secret else "configmap"
                    msg = (f'{what} "{ref.get("name")}" not found' if obj is None else
                           f'couldn\'t find key {ref.get("key")} in {"Secret" if is_secret else "ConfigMap"} '
                           f'{self.ns}/{ref.get("name")}')
                    raise PodSetupError("CreateContainerConfigError", msg)
                value = data[ref["key"]]
                env[e["name"]] = base64.b64decode(value).decode(errors="replace") if is_secret else str(value)
            elif "resourceFieldRef" in vf:
                rf = vf["resourceFieldRef"]
                section, _, res = rf.get("resource", "").partition(".")
                raw = ((c.get("resources") or {}).get(section) or {}).get(res, "0")
                try:
                    q = Quantity.parse(raw)
                    divisor = Quantity.parse(rf.get("divisor", "1")).value or 1
                    env[e["name"]] = str(-(-q.value // divisor))
                except QuantityError:
                    env[e["name"]] = str(raw)
        return env

    def _field(self, path: str) -> str:
        m = meta(self.pod)
        spec = self.pod.get("spec") or {}
        if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
            which = "labels" if ".labels[" in path else "annotations"
            key = path.split("['", 1)[1].rstrip("']")
            return str((m.get(which) or {}).get(key, ""))
        return {"metadata.name": self.name, "metadata.namespace": self.ns, "metadata.uid": self.uid,
                "spec.nodeName": spec.get("nodeName", ""), "spec.serviceAccountName": spec.get("serviceAccountName", ""),
                "status.podIP": self.agent.config.address, "status.hostIP": self.agent.config.address}.get(path, "")

    def _log_path(self, rec: ContainerRecord, attempt: int | None = None) -> Path:
        n = rec.restart_count if attempt is None else attempt
        return self.dir / "logs" / rec.name / f"{n}.log"

    async def run_container(self, rec: ContainerRecord, spec: Obj) -> int:
        """Start the container, wait for it to exit; returns the exit code (after recording it)."""
        try:
            program = program_for(spec.get("image", ""), spec.get("command"), spec.get("args"))
        except ImagePullError as exc:
            rec.state = {"waiting": {"reason": "ErrImagePull", "message": str(exc)}}
            await self.report()
            await self.runner.events.event(self.pod, "Warning", "Failed", str(exc))
            raise PodSetupError("ErrImagePull", str(exc)) from exc
        env = await self._env(spec)
        log_path = self._log_path(rec)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        term = self.dir / "termination" / rec.name
        term.parent.mkdir(parents=True, exist_ok=True)
        term.write_bytes(b"")
        cg = ContainerCgroups(self.uid, rec.name, spec.get("resources") or {})
        self.cgroups[rec.name] = cg
        mounts, devices = [], []
        for vm in spec.get("volumeMounts") or []:
            kind, source, ro = self.mounts.get(vm["name"], ("", "", False))
            if not source:
                raise PodSetupError("CreateContainerConfigError", f'volume "{vm["name"]}" not found')
            if kind == "block":
                raise PodSetupError("CreateContainerConfigError", f'volume "{vm["name"]}" is a Block volume: use '
                                    "volumeDevices, not volumeMounts")
            if vm.get("subPath"):
                source = str(Path(source) / vm["subPath"])
                Path(source).mkdir(parents=True, exist_ok=True)
            mounts.append({"source": source, "target": vm["mountPath"], "readOnly": ro or bool(vm.get("readOnly"))})
        for vd in spec.get("volumeDevices") or []:
            kind, source, _ = self.mounts.get(vd["name"], ("", "", False))
            if kind != "block":
                raise PodSetupError("CreateContainerConfigError", f'volume "{vd["name"]}" is not a Block volume: use '
                                    "volumeMounts, not volumeDevices")
            devices.append({"source": source, "target": vd["devicePath"]})
        sec = {**((self.pod.get("spec") or {}).get("securityContext") or {}), **(spec.get("securityContext") or {})}
        progress = self.dir / "progress" / rec.name
        if program.kind == "worker":
            progress.parent.mkdir(parents=True, exist_ok=True)
            progress.write_bytes(b"")
        shim_spec = {"root": str(self.dir / "root" / rec.name), "mounts": mounts, "devices": devices,
                     "terminationLog": {"source": str(term),
                                        "target": spec.get("terminationMessagePath") or "/dev/termination-log"},
                     "progressFile": {"source": str(progress), "target": PROGRESS_TARGET}
                     if program.kind == "worker" else None,
                     "cgroups": cg.create(), "workingDir": spec.get("workingDir") or "/",
                     "argv": list(program.argv), "env": env,
                     "uid": sec.get("runAsUser"), "gid": sec.get("runAsGroup")}
        spec_file = self.dir / "run" / f"{rec.name}.json"
        spec_file.parent.mkdir(parents=True, exist_ok=True)
        spec_file.write_text(json.dumps(shim_spec))
        if program.kind == "pause":
            argv = list(program.argv)  # a pause container only waits: no filesystem view to build
        elif can_isolate():
            argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-m", "vdisk.node.shim",
                    str(spec_file)]
        elif mounts or devices:
            raise PodSetupError("CreateContainerError", "mounting volumes into pods needs root on this node")
        else:
            argv = list(program.argv)
        logf = log_path.open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdout=logf, stderr=logf, stdin=asyncio.subprocess.DEVNULL,
                                                        env=env if argv[0] != "unshare" else None,
                                                        start_new_session=True)
        finally:
            logf.close()
        self.procs[rec.name] = proc
        started = now_rfc3339()
        rec.container_id = f"vdisk://{self.uid}-{rec.name}-{proc.pid}"
        rec.state = {"running": {"startedAt": started}}
        rec.started = True
        rec.ready = not rec.init
        await self.report()
        publisher = asyncio.create_task(self._publish_progress(progress)) if program.kind == "worker" else None
        try:
            code = await proc.wait()
        finally:
            if publisher is not None:
                publisher.cancel()
                await asyncio.gather(publisher, return_exceptions=True)
        if publisher is not None:
            await self._publish_progress(progress, once=True)
        self.procs.pop(rec.name, None)
        finished = now_rfc3339()
        if code < 0:
            code = 128 - code  # killed by a signal, as runtimes report it
        message = term.read_bytes()[:TERMINATION_LIMIT].decode(errors="replace") if term.exists() else ""
        if not message and code != 0 and spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = "\n".join(log_path.read_text(errors="replace").splitlines()[-80:])[-2048:]
        reason = "Completed" if code == 0 else ("OOMKilled" if cg.oom_killed() else "Error")
        terminated: Obj = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished,
                           "containerID": rec.container_id}
        if message:
            terminated["message"] = message
        rec.state = {"terminated": terminated}
        rec.ready = False
        cg.remove()
        return code

    async def _publish_progress(self, path: Path, once: bool = False) -> None:
        """Copy the worker's progress file into the pod annotation the controllers read (on change)."""
        last = (meta(self.pod).get("annotations") or {}).get(ANN_PROGRESS)
        while True:
            rec = read_progress(path)
            if rec is not None:
                value = json.dumps(rec, separators=(",", ":"), sort_keys=True)
                if value != last:
                    try:
                        await self.client.patch(POD, self.name, {"metadata": {"annotations": {ANN_PROGRESS: value}}},
                                                namespace=self.ns)
                        last = value
                    except ApiError as exc:
                        log.debug("progress not published pod=%s/%s error=%s", self.ns, self.name, exc)
            if once:
                return
            await asyncio.sleep(PROGRESS_INTERVAL)

    async def _supervise(self, rec: ContainerRecord, spec: Obj, init: bool) -> None:
        backoff = self.agent.config.restart_backoff
        while not self.stopping:
            t0 = time.monotonic()
            code = await self.run_container(rec, spec)
            if self.stopping:
                break
            again = self.restart_policy == "Always" and not init or \
                (self.restart_policy in ("Always", "OnFailure") and code != 0)
            if not again:
                await self.report()
                return
            if time.monotonic() - t0 > 600:
                backoff = self.agent.config.restart_backoff
            rec.last_state = rec.state
            rec.state = {"waiting": {"reason": "CrashLoopBackOff",
                                     "message": f"back-off {int(backoff)}s restarting failed container={rec.name} "
                                                f"pod={self.name}_{self.ns}({self.uid})"}}
            await self.report()
            await self.runner.events.event(self.pod, "Warning", "BackOff", "Back-off restarting failed container "
                                           f"{rec.name} in pod {self.name}_{self.ns}({self.uid})")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            rec.restart_count += 1

    async def run(self) -> None:
        spec = self.pod.get("spec") or {}
        delay = 1.0
        while not self.stopping:
            try:
                if not self.volumes_ready:
                    await self.setup_volumes()
                for rec, cspec in zip(self.init, spec.get("initContainers") or [], strict=False):
                    if (rec.terminated or {}).get("exitCode", 1) == 0:
                        continue
                    await self._supervise(rec, cspec, init=True)
                    if (rec.terminated or {}).get("exitCode", 1) != 0:
                        await self.report()
                        return
                pending = [(r, c) for r, c in zip(self.main, spec.get("containers") or [], strict=False)
                           if not (r.terminated and self.restart_policy != "Always" and
                                   (self.restart_policy == "Never" or r.terminated.get("exitCode", 1) == 0))]
                await asyncio.gather(*(self._supervise(r, c, init=False) for r, c in pending))
                await self.report()
                return
            except PodSetupError as exc:
                for rec in self.init + self.main:
                    if not rec.running and rec.terminated is None:
                        rec.state = {"waiting": {"reason": "ContainerCreating" if exc.reason == "FailedMount"
                                                 else exc.reason, "message": exc.message}}
                await self.report()
                await self.runner.events.event(self.pod, "Warning", exc.reason, exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def stop(self, grace: float) -> None:
        """SIGTERM every process, wait up to `grace`, SIGKILL, wait (never leak a child)."""
        self.stopping = True
        procs = list(self.procs.values())
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if procs:
            try:
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), grace)
            except TimeoutError:
                for p in procs:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                await asyncio.gather(*(p.wait() for p in procs))
        for cg in self.cgroups.values():
            cg.remove()


class PodRunner:
    def __init__(self, agent: NodeAgent):
        self.agent = agent
        self.pods = Informer(agent.client, POD)
        self.events = agent.events
        self.pods_dir = agent.data_dir / "pods"
        self.workers: dict[str, tuple[PodWorker, asyncio.Task[None]]] = {}
        self.controller = Controller(f"node-{agent.name}-pods", self.sync, workers=4)
        self.controller.watch(self.pods)
        self.controller.watch(agent.pvcs, self._pods_of_claim)

    def _pods_of_claim(self, pvc: Obj) -> list[Key]:
        ns, name = key_of(pvc)
        return [key_of(p) for p in self.pods.list(ns)
                if (p.get("spec") or {}).get("nodeName") == self.agent.name and
                any((v.get("persistentVolumeClaim") or {}).get("claimName") == name
                    for v in (p.get("spec") or {}).get("volumes") or [])]

    def worker_for(self, ns: str, name: str) -> PodWorker | None:
        for w, _ in self.workers.values():
            if w.ns == ns and w.name == name:
                return w
        return None

    async def sync(self, key: Key) -> Result | None:
        pod = self.pods.get(*key)
        for uid, (w, _task) in list(self.workers.items()):
            if (w.ns, w.name) == key and (pod is None or meta(pod)["uid"] != uid):
                await self._stop(uid, 0)
        if pod is None or (pod.get("spec") or {}).get("nodeName") != self.agent.name:
            return None
        uid = meta(pod)["uid"]
        if meta(pod).get("deletionTimestamp"):
            grace = meta(pod).get("deletionGracePeriodSeconds")
            grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30) if grace is None else grace)
            await self._stop(uid, grace)
            try:
                await self.agent.client._lk.delete(POD.resource, key[1], namespace=key[0], grace_period=0)
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
            return None
        if uid in self.workers:
            return None
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return None
        worker = PodWorker(self, pod)
        task = asyncio.create_task(self._run(worker))
        self.workers[uid] = (worker, task)
        return None

    async def _run(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod worker failed pod=%s/%s", worker.ns, worker.name)

    async def _stop(self, uid: str, grace: float) -> None:
        entry = self.workers.pop(uid, None)
        if entry is None:
            return
        worker, task = entry
        await worker.stop(min(grace, 30.0))
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
        shutil.rmtree(worker.dir / "root", ignore_errors=True)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.pods.run())
                tg.create_task(self.controller.run())
        finally:
            for uid in list(self.workers):
                await self._stop(uid, 5)


__all__ = ["PodRunner", "PodSetupError", "PVC"]
