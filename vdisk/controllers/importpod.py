"""Importer pods for PVCs that carry CDI's import annotations; the pod's state mirrored back onto the PVC.

Upstream: CDI pkg/controller/import-controller.go (createImporterPod, makeImportEnv, createScratch-
PersistentVolumeClaim, updatePvcFromPod, the termination message) and pkg/controller/util.go
(setAnnotationsFromPodWithPrefix). A PVC with `cdi.kubevirt.io/storage.import.source` gets a pod
`importer-<pvc>` owned by the PVC once the PVC is bound (or at once on a WaitForFirstConsumer class when
`cdi.kubevirt.io/storage.bind.immediate.requested` asks for it: the pod is then the first consumer).

Scratch is lazy (R41, R42: never more than CDI): the worker streams wherever it can and exits with
`scratchSpaceRequired` only when it cannot; then the pod is replaced by one with a scratch PVC
`<pvc>-scratch` owned by the pod, so it goes when the pod goes. The decision is announced in an event.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from .. import cdi
from ..quantity import Quantity, QuantityError
from ..storage import ANN_SELECTED_NODE, meta, pv_node
from .cdiconfig import CONFIG_NAME
from .client import EVENT, POD, PV, PVC, ApiError, Client
from .dvrender import overhead_for
from .runtime import Controller, EventRecorder, Informer, Key, Result, key_of

log = logging.getLogger(__name__)

Obj = dict[str, Any]

IMPORTER_IMAGE = os.environ.get("VDISK_IMPORTER_IMAGE", "quay.io/vdisk/vdisk-importer:latest")
DATA_VOLUME, SCRATCH_VOLUME, CERT_VOLUME = "cdi-data-vol", "cdi-scratch-vol", "cdi-cert-vol"
CERT_DIR = "/certs"
# annotations that describe the claim itself and do not belong on its worker pod
POD_SKIP_PREFIXES = ("cdi.kubevirt.io/storage.", "pv.kubernetes.io/", "volume.kubernetes.io/",
                     "volume.beta.kubernetes.io/", "kubectl.kubernetes.io/last-applied-configuration",
                     cdi.ANN_CREATED_FOR_DV)
MSG_SCRATCH = "Scratch space required"


def _ann(obj: Obj) -> dict[str, str]:
    return meta(obj).get("annotations") or {}


def _request(pvc: Obj) -> str:
    return str((((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage", "0"))


def _owned_by(obj: Obj, uid: str) -> bool:
    return any(r.get("uid") == uid for r in meta(obj).get("ownerReferences") or [])


def pod_resources(config: Obj) -> Obj:
    """Worker requests/limits from CDIConfig (R15); "0" means none for a limit, zero for a request."""
    reqs = (config.get("status") or {}).get("defaultPodResourceRequirements") or {}
    out: Obj = {}
    for section in ("requests", "limits"):
        vals = {}
        for res, v in (reqs.get(section) or {}).items():
            try:
                zero = Quantity.parse(str(v)).value == 0
            except QuantityError:
                continue
            if section == "limits" and zero:
                continue  # a zero limit would mean "no memory at all"; CDI's 0 means unlimited
            vals[res] = str(v)
        if vals:
            out[section] = vals
    return out


def running_from_pod(pod: Obj) -> tuple[str, str, str]:
    """(running "true"/"false", reason, message) for the PVC's storage.condition.running annotations."""
    status = pod.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return "false", "Unschedulable", c.get("message") or "Importer pod cannot be scheduled"
    statuses = status.get("containerStatuses") or []
    if not statuses:
        return "false", "", ""
    st = statuses[0]
    state = st.get("state") or {}
    if "running" in state:
        return "true", "Pod is running", ""
    if "terminated" in state:
        t = state["terminated"]
        return "false", t.get("reason", ""), termination_text(t.get("message", ""))
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason", "")
    if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        return "false", "ImagePullFailed", f"failed to pull image: {st.get('image', '')}"  # CDI's text (details: the pod)
    last = (st.get("lastState") or {}).get("terminated")
    if reason == "CrashLoopBackOff" and last:
        return "false", last.get("reason", "Error"), termination_text(last.get("message", ""))
    return "false", reason, waiting.get("message", "")


def termination(message: str) -> Obj:
    """The worker's termination message as a dict (plain text becomes {"message": text})."""
    try:
        data = json.loads(message)
        if isinstance(data, dict):
            return data
    except ValueError:
        pass
    return {"message": message}


def termination_text(message: str) -> str:
    return str(termination(message).get("message", ""))


def _final_state(pod: Obj) -> Obj | None:
    """The importer container's terminated state once the pod has finished (exit 0 or given up)."""
    status = pod.get("status") or {}
    if status.get("phase") not in ("Succeeded", "Failed"):
        return None
    for st in status.get("containerStatuses") or []:
        t = (st.get("state") or {}).get("terminated")
        if t is not None:
            return dict(t)
    return None


class ImportPodController:
    """Importer pods for PVCs with `storage.import.source`; the base of the other worker-pod controllers."""

    NAME = "import"
    SELECT = cdi.ANN_SOURCE  # the PVC annotation that asks for this worker
    COMPONENT = cdi.IMPORTER_LABEL
    POD_ANNOTATION = cdi.ANN_IMPORT_POD

    def __init__(self, client: Client, pvcs: Informer, pods: Informer, classes: Informer, configs: Informer,
                 events: EventRecorder):
        self.client = client
        self.pvcs = pvcs
        self.pods = pods
        self.classes = classes
        self.configs = configs
        self.events = events
        self.stall_timeout = os.environ.get("VDISK_IMPORT_STALL_TIMEOUT", "")
        self.controller = Controller(self.NAME, self.reconcile, workers=4)
        self.controller.watch(pvcs, self._import_claims)
        self.controller.watch(pods, self._claim_of_pod)

    def pod_name(self, pvc_name: str) -> str:
        return cdi.importer_pod_name(pvc_name)

    def always_scratch(self, pvc: Obj) -> bool:
        return False

    def pod_ready(self, pod: Obj) -> bool:
        return any(s.get("ready") for s in (pod.get("status") or {}).get("containerStatuses") or [])

    def _import_claims(self, pvc: Obj) -> list[Key]:
        ann = _ann(pvc)
        if self.SELECT in ann:
            return [key_of(pvc)]
        name = meta(pvc)["name"]
        if name.endswith("-scratch"):  # a scratch claim changed: its target claim may go on
            return [(meta(pvc).get("namespace", ""), name[: -len("-scratch")])]
        return []

    def _claim_of_pod(self, pod: Obj) -> list[Key]:
        m = meta(pod)
        if (m.get("labels") or {}).get(cdi.LABEL_COMPONENT) != self.COMPONENT:
            return []
        return [(m.get("namespace", ""), r["name"]) for r in m.get("ownerReferences") or []
                if r.get("kind") == "PersistentVolumeClaim"]

    def _config(self) -> Obj:
        return self.configs.get("", CONFIG_NAME) or {}

    async def _owner_event(self, pvc: Obj, type_: str, reason: str, message: str) -> None:
        """Events go to the DataVolume owning the claim (what users look at), else to the claim."""
        m = meta(pvc)
        dv_ref = next((r for r in m.get("ownerReferences") or [] if r.get("kind") == "DataVolume"), None)
        target = pvc if dv_ref is None else {
            "apiVersion": dv_ref.get("apiVersion"), "kind": "DataVolume",
            "metadata": {"name": dv_ref["name"], "namespace": m.get("namespace"), "uid": dv_ref.get("uid")}}
        await self.events.event(target, type_, reason, message)

    async def _annotate(self, pvc: Obj, changes: dict[str, str | None]) -> Obj:
        current = _ann(pvc)
        delta = {k: v for k, v in changes.items() if current.get(k) != v}
        if not delta:
            return pvc
        return await self.client.patch(PVC, meta(pvc)["name"], {"metadata": {"annotations": delta}},
                                       namespace=meta(pvc).get("namespace"))

    async def reconcile(self, key: Key) -> Result | None:
        pvc = self.pvcs.get(*key)
        if pvc is None or meta(pvc).get("deletionTimestamp"):
            return None
        ann = _ann(pvc)
        if self.SELECT not in ann:
            return None
        ns, name = key
        pod_name = ann.get(self.POD_ANNOTATION) or self.pod_name(name)
        pod = self.pods.get(ns, pod_name)
        if pod is not None and not _owned_by(pod, meta(pvc).get("uid", "")):
            return Result(requeue_after=1.0)  # a pod of an earlier claim with this name is still going away
        done = ann.get(cdi.ANN_POD_PHASE) == "Succeeded" or ann.get(cdi.ANN_FATAL_ERROR) == "true"
        if done:
            if pod is not None and ann.get(cdi.ANN_RETAIN_POD) != "true" and not meta(pod).get("deletionTimestamp"):
                await self.client.delete(POD, pod_name, namespace=ns)
            return None
        if pod is None:
            return await self._start(pvc, pod_name)
        if meta(pod).get("deletionTimestamp"):
            return None
        return await self._mirror(pvc, pod)

    def _ready_for_pod(self, pvc: Obj) -> bool:
        phase = (pvc.get("status") or {}).get("phase")
        if phase == "Bound":
            return True
        sc = self.classes.get("", (pvc.get("spec") or {}).get("storageClassName") or "")
        return (phase == "Pending" and (sc or {}).get("volumeBindingMode") == "WaitForFirstConsumer"
                and cdi.ANN_IMMEDIATE_BINDING in _ann(pvc))  # CDI: present, whatever its value

    async def _start(self, pvc: Obj, pod_name: str) -> Result | None:
        if not self._ready_for_pod(pvc):
            return None
        ns, name = key_of(pvc)
        ann = _ann(pvc)
        scratch = ann.get(cdi.ANN_REQUIRES_SCRATCH) == "true" or self.always_scratch(pvc)
        if scratch:
            old = self.pvcs.get(ns, cdi.scratch_name(name))
            if old is not None:
                return Result(requeue_after=0.5)  # the previous attempt's scratch claim is still going away
        # the cache may not have seen the claim finish (its pod deleted just after Succeeded was written):
        # a worker started now would import again over a finished disk
        fresh = await self.client.get(PVC, name, namespace=ns)
        if fresh is None:
            return None
        pvc = fresh
        live = _ann(pvc)
        if live.get(cdi.ANN_POD_PHASE) == "Succeeded" or live.get(cdi.ANN_FATAL_ERROR) == "true" or \
                meta(pvc).get("deletionTimestamp"):
            return None
        pvc = await self._annotate(pvc, {self.POD_ANNOTATION: pod_name})
        try:
            pod = await self.client.create(POD, self._pod(pvc, pod_name, scratch), namespace=ns)
        except ApiError as exc:
            if exc.status.code == 409:
                return Result(requeue_after=0.5)
            if exc.status.code == 403:  # e.g. a ResourceQuota refused the worker (R15): say so on the DV
                msg = exc.status.message or "forbidden"
                await self._annotate(pvc, {cdi.ANN_RUNNING: "false", cdi.ANN_RUNNING_REASON: "ErrExceededQuota"
                                           if "quota" in msg else "Forbidden", cdi.ANN_RUNNING_MESSAGE: msg})
                return Result(requeue_after=10.0)
            raise
        if scratch:
            await self._create_scratch(pvc, pod)
        return None

    def _pod(self, pvc: Obj, pod_name: str, scratch: bool) -> Obj:
        m = meta(pvc)
        ann = _ann(pvc)
        spec = pvc.get("spec") or {}
        config = self._config()
        block = spec.get("volumeMode") == "Block"
        overhead = overhead_for(config, spec.get("storageClassName") or "", spec.get("volumeMode") or "Filesystem")
        env = [
            {"name": "IMPORTER_SOURCE", "value": ann.get(cdi.ANN_SOURCE, "")},
            {"name": "IMPORTER_ENDPOINT", "value": ann.get(cdi.ANN_ENDPOINT, "")},
            {"name": "IMPORTER_CONTENTTYPE", "value": ann.get(cdi.ANN_CONTENT_TYPE, cdi.CONTENT_KUBEVIRT)},
            {"name": "IMPORTER_IMAGE_SIZE", "value": _request(pvc)},
            {"name": "OWNER_UID", "value": ann.get(cdi.ANN_CREATED_FOR_DV) or m.get("uid", "")},
            {"name": "FILESYSTEM_OVERHEAD", "value": f"{overhead:g}"},
            {"name": "INSECURE_TLS", "value": "true" if ann.get(cdi.ANN_INSECURE) == "true" else "false"},
            {"name": "PREALLOCATION", "value": ann.get(cdi.ANN_PREALLOCATION_REQUESTED, "false")},
        ]
        if ann.get(cdi.ANN_CHECKSUM):
            env.append({"name": "IMPORTER_CHECKSUM", "value": ann[cdi.ANN_CHECKSUM]})
        if self.stall_timeout:
            env.append({"name": "IMPORTER_STALL_TIMEOUT", "value": self.stall_timeout})
        headers = sorted((k for k in ann if k.startswith(cdi.ANN_EXTRA_HEADERS + ".")),
                         key=lambda k: int(k.rsplit(".", 1)[1]) if k.rsplit(".", 1)[1].isdigit() else 0)
        for i, k in enumerate(headers):
            env.append({"name": f"IMPORTER_EXTRA_HEADER_{i}", "value": ann[k]})
        if ann.get(cdi.ANN_SECRET):
            for var, key in (("IMPORTER_ACCESS_KEY_ID", "accessKeyId"), ("IMPORTER_SECRET_KEY", "secretKey")):
                env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": ann[cdi.ANN_SECRET], "key": key}}})
        volumes: list[Obj] = [{"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": m["name"]}}]
        container: Obj = {"name": "importer", "image": IMPORTER_IMAGE, "imagePullPolicy": "IfNotPresent",
                          "env": env, "resources": pod_resources(config),
                          "terminationMessagePath": "/dev/termination-log",
                          "terminationMessagePolicy": "File"}
        mounts: list[Obj] = []
        if block:
            container["volumeDevices"] = [{"name": DATA_VOLUME, "devicePath": "/dev/cdi-block-volume"}]
        else:
            mounts.append({"name": DATA_VOLUME, "mountPath": "/data"})
        if scratch:
            volumes.append({"name": SCRATCH_VOLUME,
                            "persistentVolumeClaim": {"claimName": cdi.scratch_name(m["name"])}})
            mounts.append({"name": SCRATCH_VOLUME, "mountPath": "/scratch"})
        if ann.get(cdi.ANN_CERT_CONFIGMAP):
            volumes.append({"name": CERT_VOLUME, "configMap": {"name": ann[cdi.ANN_CERT_CONFIGMAP]}})
            mounts.append({"name": CERT_VOLUME, "mountPath": CERT_DIR})
            env.append({"name": "IMPORTER_CERT_DIR", "value": CERT_DIR})
        secret_headers = sorted(k for k in ann if k.startswith(cdi.ANN_SECRET_EXTRA_HEADERS + "."))
        for i, k in enumerate(secret_headers):
            vol = f"cdi-extra-headers-vol-{i}"
            volumes.append({"name": vol, "secret": {"secretName": ann[k]}})
            mounts.append({"name": vol, "mountPath": f"/extraheaders/secret{i}", "readOnly": True})
        if mounts:
            container["volumeMounts"] = mounts
        pod_ann = {k: v for k, v in ann.items() if not k.startswith(POD_SKIP_PREFIXES)}
        pod_spec: Obj = {"restartPolicy": "OnFailure", "enableServiceLinks": False, "containers": [container],
                         "volumes": volumes, "terminationGracePeriodSeconds": 10}
        if ann.get(cdi.ANN_PRIORITY_CLASS):
            pod_spec["priorityClassName"] = ann[cdi.ANN_PRIORITY_CLASS]
        if ann.get(cdi.ANN_SERVICE_ACCOUNT):
            pod_spec["serviceAccountName"] = ann[cdi.ANN_SERVICE_ACCOUNT]
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": m.get("namespace"), "annotations": pod_ann,
                         "labels": {cdi.LABEL_APP: cdi.APP, cdi.LABEL_COMPONENT: cdi.IMPORTER_LABEL,
                                    "prometheus.cdi.kubevirt.io": "true"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": m["name"],
                                              "uid": m.get("uid", ""), "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": pod_spec,
        }

    def scratch_class(self, pvc: Obj) -> str:
        """R41: CDIConfig's scratch class if it exists, else the default class, else the target's class."""
        status = self._config().get("status") or {}
        name = status.get("scratchSpaceStorageClass") or ""
        if name and self.classes.get("", name) is not None:
            return str(name)
        return str((pvc.get("spec") or {}).get("storageClassName") or "")

    async def _create_scratch(self, pvc: Obj, pod: Obj) -> None:
        ns, name = key_of(pvc)
        spec = pvc.get("spec") or {}
        config = self._config()
        sc_name = self.scratch_class(pvc)
        try:
            request = Quantity.parse(_request(pvc)).bytes
        except QuantityError:
            request = 0
        target_overhead = overhead_for(config, spec.get("storageClassName") or "", spec.get("volumeMode")
                                       or "Filesystem")
        scratch_overhead = overhead_for(config, sc_name, "Filesystem")
        size = cdi.round_up(cdi.required_space(scratch_overhead, cdi.usable_space(target_overhead, request)))
        claim: Obj = {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": cdi.scratch_name(name), "namespace": ns,
                         "labels": {cdi.LABEL_APP: cdi.APP, "velero.io/exclude-from-backup": "true"},
                         "annotations": {k: v for k, v in _ann(pvc).items() if k.startswith("kubevirt.io/")},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta(pod)["name"],
                                              "uid": meta(pod).get("uid", ""), "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                     "resources": {"requests": {"storage": str(size)}}},
        }
        if sc_name:
            claim["spec"]["storageClassName"] = sc_name
        # scratch must live where the target lives: a scratch volume an Immediate class put on another node
        # would leave the worker unable to start anywhere
        target_pv = await self.client.get(PV, spec["volumeName"]) if spec.get("volumeName") else None
        node = pv_node(target_pv) if target_pv else None
        if node:
            claim["metadata"]["annotations"][ANN_SELECTED_NODE] = node
        try:
            await self.client.create(PVC, claim, namespace=ns)
        except ApiError as exc:
            if exc.status.code != 409:
                await self._annotate(pvc, {cdi.ANN_BOUND: "false", cdi.ANN_BOUND_REASON: "ErrScratchSpace",
                                           cdi.ANN_BOUND_MESSAGE: exc.status.message or "scratch space not created"})
                raise

    async def _scratch_waiting(self, ns: str, name: str) -> str:
        """"Creating scratch space", with why the scratch claim is not bound yet when its events say so
        (as CDI's UpdatePVCBoundConditionFromEvents): a claim that cannot bind is named, not silent."""
        try:
            events, _ = await self.client.list(EVENT, ns, fields={"involvedObject.name": cdi.scratch_name(name),
                                                                  "involvedObject.kind": "PersistentVolumeClaim"})
        except ApiError:
            events = []
        warnings = sorted((e for e in events if e.get("type") == "Warning"),
                          key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        if warnings:
            return f"Creating scratch space: {warnings[-1].get('message', '')}"
        return "Creating scratch space"

    async def _mirror(self, pvc: Obj, pod: Obj) -> Result | None:
        ns, name = key_of(pvc)
        status = pod.get("status") or {}
        restarts = max([int(s.get("restartCount", 0)) for s in status.get("containerStatuses") or []] or [0])
        running, reason, message = running_from_pod(pod)
        changes: dict[str, str | None] = {
            cdi.ANN_POD_PHASE: status.get("phase", "Pending"),
            cdi.ANN_POD_RESTARTS: str(max(restarts, int(_ann(pvc).get(cdi.ANN_POD_RESTARTS, "0") or 0))),
            cdi.ANN_POD_READY: "true" if self.pod_ready(pod) else "false",
            cdi.ANN_POD_SCHEDULABLE: "false" if reason == "Unschedulable" else "true",
            cdi.ANN_RUNNING: running, cdi.ANN_RUNNING_REASON: reason, cdi.ANN_RUNNING_MESSAGE: message,
        }
        wants_scratch = _ann(pvc).get(cdi.ANN_REQUIRES_SCRATCH) == "true" or self.always_scratch(pvc)
        scratch_pvc = self.pvcs.get(ns, cdi.scratch_name(name)) if wants_scratch else None
        if wants_scratch and scratch_pvc is None and _final_state(pod) is None:
            # the scratch claim was never made (refused by a quota, or a restart between pod and claim):
            # try again on every pass; ErrScratchSpace stays on the claim until it works
            try:
                await self._create_scratch(pvc, pod)
            except ApiError:
                return Result(requeue_after=5.0)
        if wants_scratch and (scratch_pvc is None or (scratch_pvc.get("status") or {}).get("phase") != "Bound"):
            changes.update({cdi.ANN_BOUND: "false", cdi.ANN_BOUND_REASON: "CreatingScratchSpace",
                            cdi.ANN_BOUND_MESSAGE: await self._scratch_waiting(ns, name)})
        elif _ann(pvc).get(cdi.ANN_BOUND_REASON) == "CreatingScratchSpace":
            changes.update({cdi.ANN_BOUND: "true", cdi.ANN_BOUND_REASON: None, cdi.ANN_BOUND_MESSAGE: None})
        final = _final_state(pod)
        if final is not None:
            term = termination(final.get("message", ""))
            if final.get("exitCode") == 0 and term.get("scratchSpaceRequired"):
                changes.update({cdi.ANN_REQUIRES_SCRATCH: "true", cdi.ANN_POD_PHASE: None,
                                cdi.ANN_RUNNING_REASON: MSG_SCRATCH,
                                cdi.ANN_RUNNING_MESSAGE: "scratch space required and none found"})
                await self._annotate(pvc, changes)
                await self._owner_event(pvc, "Normal", "ScratchSpaceRequired",
                                        f"Import into {name} continues with scratch space: {term.get('message')}")
                await self.client.delete(POD, meta(pod)["name"], namespace=ns)
                return None
            if final.get("exitCode") == 0 and term.get("fatalError"):
                changes.update({cdi.ANN_FATAL_ERROR: "true", cdi.ANN_POD_PHASE: "Failed",
                                cdi.ANN_RUNNING_REASON: str(term.get("reason") or "Error"),
                                cdi.ANN_RUNNING_MESSAGE: str(term.get("message", ""))})
            elif final.get("exitCode") == 0:
                extra = term.get("vdisk") or {}
                changes.update({cdi.ANN_PREALLOCATION_APPLIED: "true" if term.get("preallocationApplied")
                                else "false", cdi.ANN_RUNNING_REASON: "Completed"})
                if extra.get("preallocation"):
                    await self._owner_event(pvc, "Normal", "PreallocationApplied",
                                            f"Preallocation applied to {name}: {extra['preallocation']}")
                if extra.get("route"):
                    log.info("import finished pvc=%s/%s route=%s format=%s", ns, name, extra.get("route"),
                             extra.get("format"))
            else:
                changes[cdi.ANN_POD_PHASE] = "Failed"
        await self._annotate(pvc, changes)
        if final is not None and final.get("exitCode") == 0 and _ann(pvc).get(cdi.ANN_RETAIN_POD) != "true":
            await self.client.delete(POD, meta(pod)["name"], namespace=ns)
        if changes.get(cdi.ANN_BOUND_REASON) == "CreatingScratchSpace":
            return Result(requeue_after=5.0)  # the scratch claim's events are not watched: look again
        return None
