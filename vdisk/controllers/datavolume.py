"""DataVolumes: render and own the PVC, then tell the import's story in phase, conditions and events (R7-R11, R35).

Upstream: CDI pkg/controller/datavolume (controller-base.go: reconcile, updateStatus; import-controller.go;
conditions.go). The DataVolume controller never runs workers itself: it creates the PVC with CDI's
hand-over annotations and the worker-pod controller (importpod.py) runs the importer and mirrors the
pod's state into PVC annotations, which are read back here:

    no PVC yet           ""/Pending     Bound=False (NotFound, or ErrClaimNotValid / ErrExceededQuota)
    PVC Pending          Pending, or WaitForFirstConsumer on a WFFC class (unless
                         cdi.kubevirt.io/storage.bind.immediate.requested)
    PVC Bound            PVCBound -> ImportScheduled (pod Pending) -> ImportInProgress (Running)
                         -> Succeeded (progress "100.0%"); Failed only for fatal errors and a Lost claim
Progress comes from the worker pod's `vdisk.io/progress` record (published by its node agent).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .. import cdi
from ..storage import meta
from .cdiconfig import CONFIG_NAME
from .client import DATAVOLUME, PVC, ApiError, Client
from .dvrender import Cluster, RenderError, new_pvc, render_pvc_spec, source_kind
from .runtime import Controller, EventRecorder, Informer, Key, Result, key_of, set_condition

log = logging.getLogger(__name__)

Obj = dict[str, Any]

HANDLED_SOURCES = ("http", "registry", "blank", "upload")


def _controller_uid(obj: Obj) -> str | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _is_wffc(pvc: Obj, classes: dict[str, Obj]) -> bool:
    sc = classes.get((pvc.get("spec") or {}).get("storageClassName") or "")
    return bool(sc) and (sc or {}).get("volumeBindingMode") == "WaitForFirstConsumer"


def _progress_of(pod: Obj | None, upload: bool = False) -> str | None:
    raw = (meta(pod).get("annotations") or {}).get(cdi.ANN_PROGRESS) if pod else None
    if not raw:
        return None
    try:
        rec = json.loads(raw)
        if upload and "bytes" not in rec:
            return None  # nothing received yet
        pct = float(rec.get("percent", 0.0))
    except (ValueError, AttributeError, TypeError):
        return None
    return f"{min(pct, 100.0):.2f}%"


def import_phase(pvc: Obj | None, classes: dict[str, Obj], rendered: bool, upload: bool = False) -> str:
    if pvc is None:
        return "Pending" if rendered else ""
    ann = meta(pvc).get("annotations") or {}
    if ann.get(cdi.ANN_POPULATED_FOR) or ann.get(cdi.ANN_POD_PHASE) == "Succeeded":
        return "Succeeded"
    if ann.get(cdi.ANN_FATAL_ERROR) == "true":
        return "Failed"
    phase = (pvc.get("status") or {}).get("phase", "Pending")
    pod_phase = ann.get(cdi.ANN_POD_PHASE)
    if phase == "Lost":
        return "Failed"
    if phase == "Pending":
        if _is_wffc(pvc, classes) and cdi.ANN_IMMEDIATE_BINDING not in ann:  # CDI: presence counts
            return "WaitForFirstConsumer"
        if pod_phase == "Pending":
            return "UploadScheduled" if upload else "ImportScheduled"
        return "Pending"
    if phase != "Bound":
        return "Unknown"
    if upload:
        if pod_phase == "Running" and ann.get(cdi.ANN_POD_READY) == "true":
            return "UploadReady"
        return "UploadScheduled" if pod_phase in ("Pending", "Running", "Failed") else "PVCBound"
    return {"Pending": "ImportScheduled", "Running": "ImportInProgress", "Failed": "ImportInProgress"}.get(
        pod_phase or "", "PVCBound")


def bound_condition(pvc: Obj | None, render_error: RenderError | None) -> tuple[str, str, str]:
    if pvc is None:
        if render_error is not None:
            return "False", render_error.reason, render_error.message
        return "False", "NotFound", "No PVC found"
    name = meta(pvc)["name"]
    ann = meta(pvc).get("annotations") or {}
    phase = (pvc.get("status") or {}).get("phase", "Pending")
    if phase == "Bound":
        if ann.get(cdi.ANN_BOUND) == "false":
            return "False", ann.get(cdi.ANN_BOUND_REASON, ""), ann.get(cdi.ANN_BOUND_MESSAGE, "")
        return "True", "Bound", f"PVC {name} Bound"
    if phase == "Lost":
        return "False", "ClaimLost", "Claim Lost"
    if ann.get(cdi.ANN_BOUND) == "false" and ann.get(cdi.ANN_BOUND_REASON):
        return "False", ann[cdi.ANN_BOUND_REASON], ann.get(cdi.ANN_BOUND_MESSAGE, "")
    return "False", "Pending", f"PVC {name} Pending"


def running_condition(pvc: Obj | None) -> tuple[str, str, str]:
    ann = (meta(pvc).get("annotations") or {}) if pvc else {}
    status = "True" if ann.get(cdi.ANN_RUNNING) == "true" else "False"
    return status, ann.get(cdi.ANN_RUNNING_REASON, ""), cdi.simplify_message(ann.get(cdi.ANN_RUNNING_MESSAGE, ""))


# Running=False reasons that are steps, not problems: no Warning for them
QUIET_REASONS = ("", "Completed", "Pending", "ContainerCreating", "PodInitializing", "Scratch space required")
UPLOAD_EVENTS = {
    "UploadScheduled": ("Normal", "UploadScheduled", "Upload into {} scheduled"),
    "UploadReady": ("Normal", "UploadReady", "Upload into {} ready"),
    "Succeeded": ("Normal", "UploadSucceeded", "Successfully uploaded into {}"),
}
PHASE_EVENTS = {
    "ImportScheduled": ("Normal", "ImportScheduled", "Import into {} scheduled"),
    "ImportInProgress": ("Normal", "ImportInProgress", "Import into {} in progress"),
    "Succeeded": ("Normal", "ImportSucceeded", "Successfully imported into PVC {}"),
    "WaitForFirstConsumer": ("Normal", "WaitForFirstConsumer", "PVC {} waiting for first consumer"),
}


class DataVolumeController:
    def __init__(self, client: Client, dvs: Informer, pvcs: Informer, pods: Informer, classes: Informer,
                 profiles: Informer, configs: Informer, events: EventRecorder,
                 upload_events: EventRecorder | None = None):
        self.client = client
        self.dvs = dvs
        self.pvcs = pvcs
        self.pods = pods
        self.classes = classes
        self.profiles = profiles
        self.configs = configs
        self._events = events
        # CDI runs one DataVolume controller per source: events name the one that speaks
        self._upload_events = upload_events or events
        self.controller = Controller("datavolume", self.reconcile, workers=4)
        self.controller.watch(dvs)
        self.controller.watch(pvcs, self._dv_of_pvc)
        self.controller.watch(pods, self._dv_of_pod)
        every_unbound = lambda o: [key_of(dv) for dv in self.dvs.list()  # noqa: E731
                                   if self.pvcs.get(*key_of(dv)) is None]
        self.controller.watch(classes, every_unbound)
        self.controller.watch(profiles, every_unbound)
        self.controller.watch(configs, every_unbound)

    @staticmethod
    def _dv_of_pvc(pvc: Obj) -> list[Key]:
        m = meta(pvc)
        return [(m.get("namespace", ""), ref["name"]) for ref in m.get("ownerReferences") or []
                if ref.get("kind") == "DataVolume"] or [key_of(pvc)]

    def _dv_of_pod(self, pod: Obj) -> list[Key]:
        m = meta(pod)
        if (m.get("labels") or {}).get(cdi.LABEL_APP) != cdi.APP:  # importer and upload server pods
            return []
        out: list[Key] = []
        for ref in m.get("ownerReferences") or []:
            if ref.get("kind") == "PersistentVolumeClaim":
                pvc = self.pvcs.get(m.get("namespace", ""), ref["name"])
                out += self._dv_of_pvc(pvc) if pvc else [(m.get("namespace", ""), ref["name"])]
        return out

    def _cluster(self) -> Cluster:
        return Cluster(classes={meta(sc)["name"]: sc for sc in self.classes.list()},
                       profiles={meta(p)["name"]: p for p in self.profiles.list()},
                       config=self.configs.get("", CONFIG_NAME) or {})

    def _recorder(self, dv: Obj) -> EventRecorder:
        return self._upload_events if source_kind(dv) == "upload" else self._events

    async def reconcile(self, key: Key) -> Result | None:
        dv = self.dvs.get(*key)
        if dv is None or meta(dv).get("deletionTimestamp"):
            return None
        ns, name = key
        kind = source_kind(dv)
        cluster = self._cluster()
        pvc = self.pvcs.get(ns, name)
        render_error: RenderError | None = None
        result: Result | None = None
        if pvc is None and kind not in HANDLED_SOURCES:
            await self._write_status(dv, {**(dv.get("status") or {}), "phase": "Pending", "progress": "N/A"},
                                     None, None, None)
            await self._recorder(dv).event(dv, "Warning", "UnsupportedSource",
                                    f"source {kind or '(none)'} is not supported by this vdisk version")
            return None
        if pvc is None:
            try:
                spec = render_pvc_spec(dv, cluster)
                pvc = await self.client.create(PVC, new_pvc(dv, spec, cluster), namespace=ns)
            except RenderError as exc:
                render_error = exc
                await self._recorder(dv).event(dv, "Warning", exc.reason, exc.event)
                if exc.retry:
                    result = Result(requeue_after=5.0)
            except ApiError as exc:
                if exc.status.code == 403 and "exceeded quota" in (exc.status.message or ""):
                    render_error = RenderError("ErrExceededQuota", exc.status.message or "")
                    await self._recorder(dv).event(dv, "Warning", "ErrExceededQuota", exc.status.message or "")
                    result = Result(requeue_after=10.0)
                elif exc.status.code == 409:
                    return Result(requeue_after=0.2)
                else:
                    raise
        elif _controller_uid(pvc) != meta(dv).get("uid"):
            if (meta(pvc).get("annotations") or {}).get(cdi.ANN_POPULATED_FOR) == name:
                pvc = await self._adopt(dv, pvc)  # a pre-populated claim: it is this DataVolume's disk
            else:
                msg = f'Resource "{name}" already exists and is not managed by DataVolume'
                await self._recorder(dv).event(dv, "Warning", "ErrResourceExists", msg)
                render_error = RenderError("ErrResourceExists", msg)
                pvc = None
        pod = None
        if pvc is not None:
            pann = meta(pvc).get("annotations") or {}
            pod_name = (pann.get(cdi.ANN_UPLOAD_POD) or cdi.upload_pod_name(name)) if kind == "upload" else \
                (pann.get(cdi.ANN_IMPORT_POD) or cdi.importer_pod_name(name))
            pod = self.pods.get(ns, pod_name)
        await self._write_status(dv, None, pvc, pod, render_error, cluster)
        return result

    async def _adopt(self, dv: Obj, pvc: Obj) -> Obj:
        m = meta(dv)
        refs = [r for r in meta(pvc).get("ownerReferences") or [] if not r.get("controller")]
        refs.append({"apiVersion": dv.get("apiVersion", "cdi.kubevirt.io/v1beta1"), "kind": "DataVolume",
                     "name": m["name"], "uid": m.get("uid", ""), "controller": True, "blockOwnerDeletion": True})
        return await self.client.patch(PVC, meta(pvc)["name"], {"metadata": {"ownerReferences": refs}},
                                       namespace=m.get("namespace"))

    async def _write_status(self, dv: Obj, fixed: Obj | None, pvc: Obj | None, pod: Obj | None,
                            render_error: RenderError | None, cluster: Cluster | None = None) -> None:
        old = dv.get("status") or {}
        if fixed is not None:
            status = fixed
        else:
            assert cluster is not None
            status = self._status(dv, old, pvc, pod, render_error, cluster)
        if status == old:
            return
        await self.client.patch_status(DATAVOLUME, meta(dv)["name"], status, namespace=meta(dv).get("namespace"))
        await self._emit(dv, old, status, pvc)

    def _status(self, dv: Obj, old: Obj, pvc: Obj | None, pod: Obj | None, render_error: RenderError | None,
                cluster: Cluster) -> Obj:
        upload = source_kind(dv) == "upload"
        phase = import_phase(pvc, cluster.classes, rendered=render_error is None, upload=upload)
        if old.get("phase") == "Succeeded" and pvc is not None:
            phase = "Succeeded"  # a finished import stays finished (the pod is gone by then)
        status: Obj = {k: v for k, v in old.items() if k not in ("phase", "conditions", "progress", "claimName",
                                                                  "restartCount")}
        if phase:
            status["phase"] = phase
        if pvc is not None:
            status["claimName"] = meta(pvc)["name"]
        progress = old.get("progress") or "N/A"
        if phase == "Succeeded":
            progress = "100.0%"
        elif phase in ("ImportInProgress", "UploadReady"):
            # beyond CDI, whose uploads stay at N/A: the upload server reports bytes received
            progress = _progress_of(pod, upload) or progress
        status["progress"] = progress
        ann = (meta(pvc).get("annotations") or {}) if pvc else {}
        try:
            status["restartCount"] = int(ann.get(cdi.ANN_POD_RESTARTS, old.get("restartCount", 0)) or 0)
        except ValueError:
            status["restartCount"] = 0
        conds = list(old.get("conditions") or [])
        b_status, b_reason, b_msg = bound_condition(pvc, render_error)
        conds = set_condition(conds, "Bound", b_status, b_reason, b_msg)
        r_status, r_reason, r_msg = running_condition(pvc)
        if phase == "Succeeded":
            r_status, r_reason = "False", r_reason or "Completed"
        conds = set_condition(conds, "Running", r_status, r_reason, r_msg)
        if phase == "Succeeded":
            ready = ("True", "", "")
        elif phase == "Unknown":
            ready = ("Unknown", "", "")
        elif phase in ("ImportInProgress", "UploadReady"):
            ready = ("False", "TransferRunning", "")
        else:
            ready = ("False", "", "")
        conds = set_condition(conds, "Ready", *ready)
        order = {"Bound": 0, "Ready": 1, "Running": 2}
        status["conditions"] = sorted(conds, key=lambda c: order.get(c.get("type", ""), 9))
        return status

    async def _emit(self, dv: Obj, old: Obj, new: Obj, pvc: Obj | None) -> None:
        claim = meta(pvc)["name"] if pvc else meta(dv)["name"]

        def cond(status: Obj, t: str) -> Obj:
            return next((c for c in status.get("conditions") or [] if c.get("type") == t), {})

        ob, nb = cond(old, "Bound"), cond(new, "Bound")
        if (ob.get("status"), ob.get("reason"), ob.get("message")) != (nb.get("status"), nb.get("reason"),
                                                                       nb.get("message")) and nb.get("reason"):
            if not nb.get("reason", "").startswith("Err"):  # render errors already had their Warning
                await self._recorder(dv).event(dv, "Normal", nb["reason"], nb.get("message", ""))
        phase = new.get("phase")
        table = UPLOAD_EVENTS if source_kind(dv) == "upload" else PHASE_EVENTS
        if phase != old.get("phase") and phase in table:
            typ, reason, msg = table[phase]
            await self._recorder(dv).event(dv, typ, reason, msg.format(claim))
        if phase == "Failed" and old.get("phase") != "Failed" and nb.get("reason") == "ClaimLost":
            await self._recorder(dv).event(dv, "Warning", "ErrClaimLost", f"PVC {claim} lost")
        elif phase == "Failed" and old.get("phase") != "Failed":
            running = cond(new, "Running")
            await self._recorder(dv).event(dv, "Warning", "ImportFailed", f"Failed to import into PVC {claim}")
            if running.get("message"):  # what went wrong, in an event too (the condition may change later)
                await self._recorder(dv).event(dv, "Warning", running.get("reason") or "ImportFailed",
                                               running["message"])
        orun, nrun = cond(old, "Running"), cond(new, "Running")
        if nb.get("reason") == "CreatingScratchSpace":
            return  # the worker waits for its scratch claim: expected, not worth a warning
        if (nrun.get("status") == "False" and nrun.get("message") and nrun.get("reason") not in QUIET_REASONS
                and phase in ("PVCBound", "ImportScheduled", "ImportInProgress", "Pending", "UploadScheduled")
                and (orun.get("reason"), orun.get("message")) != (nrun.get("reason"), nrun.get("message"))
                and "scratch space required" not in (nrun.get("message") or "").lower()):
            await self._recorder(dv).event(dv, "Warning", nrun["reason"], nrun.get("message") or "")
