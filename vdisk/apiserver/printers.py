"""Server-side Tables for `kubectl get`: upstream columns for built-in kinds, printer columns for CRs.

Upstream: k8s pkg/printers/internalversion/printers.go (v1.32 columns and cells),
apiextensions-apiserver pkg/registry/customresource/tableconvertor (additionalPrinterColumns),
apiserver pkg/registry/rest/table.go (the default Name/Created At table) and
apimachinery pkg/util/duration (HumanDuration). The server always fills every column, priority-1
ones included; kubectl hides those unless `-o wide`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..quantity import Quantity, QuantityError
from .jsonpath import JSONPathError, compile_path
from .registry import ResourceType, Version

Obj = dict[str, Any]

D_NAME = ("Name must be unique within a namespace. Is required when creating resources, although some resources "
          "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
          "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
          "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
D_AGE = ("CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
         "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
         "It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. "
         "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")


def human_duration(seconds_f: float) -> str:
    seconds = int(seconds_f)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


@functools.lru_cache(maxsize=4096)
def _parse_time(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def since(ts: str | None, now: datetime) -> str:
    if not ts:
        return "<unknown>"
    t = _parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def _col(name: str, description: str, typ: str = "string", fmt: str = "", priority: int = 0) -> Obj:
    return {"name": name, "type": typ, "format": fmt, "description": description, "priority": priority}


NAME_COL = _col("Name", D_NAME, fmt="name")
AGE_COL = _col("Age", D_AGE)


def _qty(q: Any) -> str:
    if q is None:
        return "0"
    try:
        return str(Quantity.parse(q))
    except QuantityError:
        return str(q)


def access_modes(modes: list[str] | None) -> str:
    modes = modes or []
    out = []
    for full, short in (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                        ("ReadWriteOncePod", "RWOP")):
        if full in modes:
            out.append(short)
    return ",".join(out)


def _meta(o: Obj) -> Obj:
    return o.get("metadata") or {}


def _age(o: Obj, now: datetime) -> str:
    return since(_meta(o).get("creationTimestamp"), now)


# --- built-in printers: (columns, cells(obj, now) -> list) ---------------------------------------------------

def _namespace(o: Obj, now: datetime) -> list[Any]:
    return [_meta(o).get("name"), (o.get("status") or {}).get("phase", ""), _age(o, now)]


def _node(o: Obj, now: datetime) -> list[Any]:
    status = o.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    st = []
    if "Ready" in conds:
        st.append("Ready" if conds["Ready"].get("status") == "True" else "NotReady")
    if not st:
        st.append("Unknown")
    if (o.get("spec") or {}).get("unschedulable"):
        st.append("SchedulingDisabled")
    roles = set()
    for k, v in (_meta(o).get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/"):
            r = k[len("node-role.kubernetes.io/"):]
            if r:
                roles.add(r)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = status.get("nodeInfo") or {}
    addrs = status.get("addresses") or []

    def addr(t: str) -> str:
        return next((a.get("address") for a in addrs if a.get("type") == t), None) or "<none>"

    return [_meta(o).get("name"), ",".join(st), ",".join(sorted(roles)) or "<none>", _age(o, now),
            info.get("kubeletVersion", ""), addr("InternalIP"), addr("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _later(a: str | None, b: str | None) -> str | None:
    if not b:
        return a
    if not a:
        return b
    ta, tb = _parse_time(a), _parse_time(b)
    return b if (ta and tb and tb > ta) else a


def _pod(o: Obj, now: datetime) -> list[Any]:
    spec = o.get("spec") or {}
    status = o.get("status") or {}
    restarts = 0
    total = len(spec.get("containers") or [])
    ready = 0
    last_restart: str | None = None
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total += sum(1 for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always")
    initializing = False
    sidecar_restarts = 0
    last_sidecar: str | None = None
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount", 0)
        term_last = ((cs.get("lastState") or {}).get("terminated") or {})
        last_restart = _later(last_restart, term_last.get("finishedAt"))
        sidecar = (init_specs.get(cs.get("name")) or {}).get("restartPolicy") == "Always"
        if sidecar:
            sidecar_restarts += cs.get("restartCount", 0)
            last_sidecar = _later(last_sidecar, term_last.get("finishedAt"))
        state = cs.get("state") or {}
        t, w = state.get("terminated"), state.get("waiting")
        if t and t.get("exitCode", 0) == 0:
            continue
        if sidecar and cs.get("started") is True:
            if cs.get("ready"):
                ready += 1
            continue
        if t:
            reason = ("Init:" + t["reason"]) if t.get("reason") else (
                f"Init:Signal:{t['signal']}" if t.get("signal") else f"Init:ExitCode:{t.get('exitCode', 0)}")
        elif w and w.get("reason") and w.get("reason") != "PodInitializing":
            reason = "Init:" + w["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    initialized = next((c.get("status") == "True" for c in status.get("conditions") or []
                        if c.get("type") == "Initialized"), False)
    if not initializing or initialized:
        restarts = sidecar_restarts
        last_restart = last_sidecar
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            last_restart = _later(last_restart, ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
            state = cs.get("state") or {}
            w, t = state.get("waiting"), state.get("terminated")
            if w and w.get("reason"):
                reason = w["reason"]
            elif t:
                reason = t.get("reason") or (f"Signal:{t['signal']}" if t.get("signal")
                                             else f"ExitCode:{t.get('exitCode', 0)}")
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions") or [])
            reason = "Running" if pod_ready else "NotReady"
    if _meta(o).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Failed", "Succeeded"):
            reason = "Terminating"
    restarts_s = str(restarts)
    if restarts and last_restart:
        restarts_s = f"{restarts} ({since(last_restart, now)} ago)"
    ips = status.get("podIPs") or []
    ip = status.get("podIP") or (ips[0].get("ip") if ips else None) or "<none>"
    gates = spec.get("readinessGates") or []
    if gates:
        conds = status.get("conditions") or []
        n_true = 0
        for g in gates:
            c = next((c for c in conds if c.get("type") == g.get("conditionType")), None)
            if c and c.get("status") == "True":
                n_true += 1
        gates_s = f"{n_true}/{len(gates)}"
    else:
        gates_s = "<none>"
    return [_meta(o).get("name"), f"{ready}/{total}", reason, restarts_s, _age(o, now), ip,
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gates_s]


def _pod_conditions(o: Obj) -> list[Obj] | None:
    phase = (o.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return None


def _storage_class_of(o: Obj) -> str:
    ann = _meta(o).get("annotations") or {}
    if "volume.beta.kubernetes.io/storage-class" in ann:
        return str(ann["volume.beta.kubernetes.io/storage-class"])
    return (o.get("spec") or {}).get("storageClassName") or ""


def _pv(o: Obj, now: datetime) -> list[Any]:
    spec = o.get("spec") or {}
    ref = spec.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    phase = "Terminating" if _meta(o).get("deletionTimestamp") else (o.get("status") or {}).get("phase", "")
    return [_meta(o).get("name"), _qty((spec.get("capacity") or {}).get("storage")),
            access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""), phase, claim,
            _storage_class_of(o), spec.get("volumeAttributesClassName") or "<unset>",
            (o.get("status") or {}).get("reason", ""), _age(o, now), spec.get("volumeMode") or "<unset>"]


def _pvc(o: Obj, now: datetime) -> list[Any]:
    spec = o.get("spec") or {}
    status = o.get("status") or {}
    phase = "Terminating" if _meta(o).get("deletionTimestamp") else status.get("phase", "")
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = access_modes(status.get("accessModes"))
        capacity = _qty((status.get("capacity") or {}).get("storage"))
    return [_meta(o).get("name"), phase, spec.get("volumeName", ""), capacity, modes, _storage_class_of(o),
            spec.get("volumeAttributesClassName") or "<unset>", _age(o, now), spec.get("volumeMode") or "<unset>"]


def is_default_class(o: Obj) -> bool:
    ann = _meta(o).get("annotations") or {}
    return (ann.get("storageclass.kubernetes.io/is-default-class") == "true"
            or ann.get("storageclass.beta.kubernetes.io/is-default-class") == "true")


def _storageclass(o: Obj, now: datetime) -> list[Any]:
    name = _meta(o).get("name", "")
    if is_default_class(o):
        name += " (default)"
    return [name, o.get("provisioner", ""), o.get("reclaimPolicy") or "Delete",
            o.get("volumeBindingMode") or "Immediate", bool(o.get("allowVolumeExpansion") or False), _age(o, now)]


def _csidriver(o: Obj, now: datetime) -> list[Any]:
    spec = o.get("spec") or {}
    tokens = spec.get("tokenRequests")
    return [_meta(o).get("name"), spec.get("attachRequired", True), bool(spec.get("podInfoOnMount", False)),
            bool(spec.get("storageCapacity", False)),
            "<unset>" if not tokens else ",".join(t.get("audience", "") for t in tokens),
            bool(spec.get("requiresRepublish", False)), ",".join(spec.get("volumeLifecycleModes") or []) or "<none>",
            _age(o, now)]


def _configmap(o: Obj, now: datetime) -> list[Any]:
    return [_meta(o).get("name"), len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o, now)]


def _secret(o: Obj, now: datetime) -> list[Any]:
    keys = set(o.get("data") or {}) | set(o.get("stringData") or {})
    return [_meta(o).get("name"), o.get("type", ""), len(keys), _age(o, now)]


def _event(o: Obj, now: datetime) -> list[Any]:
    first = since(o.get("firstTimestamp"), now) if o.get("firstTimestamp") else since(o.get("eventTime"), now)
    last = since(o.get("lastTimestamp"), now) if o.get("lastTimestamp") else first
    count = o.get("count") or 0
    series = o.get("series")
    if series:
        last = since(series.get("lastObservedTime"), now)
        count = series.get("count", 0)
    elif count == 0:
        count = 1
    inv = o.get("involvedObject") or {}
    kind = (inv.get("kind") or "").lower()
    obj = f"{kind}/{inv['name']}" if inv.get("name") else kind
    src = o.get("source") or {}
    component = src.get("component") or o.get("reportingComponent") or ""
    instance = src.get("host") or o.get("reportingInstance") or ""
    source = component if not instance else f"{component}, {instance}"
    return [last, o.get("type", ""), o.get("reason", ""), obj, inv.get("fieldPath", ""), source,
            (o.get("message") or "").strip(), first, int(count), _meta(o).get("name")]


def _resourcequota(o: Obj, now: datetime) -> list[Any]:
    status = o.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    req: list[str] = []
    lim: list[str] = []
    for r in sorted(hard):
        entry = f"{r}: {_qty(used.get(r))}/{_qty(hard[r])}"
        parts = r.split(".")
        (lim if len(parts) > 1 and parts[0] == "limits" else req).append(entry)
    return [_meta(o).get("name"), ", ".join(req), ", ".join(lim), _age(o, now)]


def _serviceaccount(o: Obj, now: datetime) -> list[Any]:
    return [_meta(o).get("name"), len(o.get("secrets") or []), _age(o, now)]


def _lease(o: Obj, now: datetime) -> list[Any]:
    return [_meta(o).get("name"), (o.get("spec") or {}).get("holderIdentity") or "<unset>", _age(o, now)]


def _created_at(o: Obj, now: datetime) -> list[Any]:
    return [_meta(o).get("name"), _meta(o).get("creationTimestamp") or "0001-01-01T00:00:00Z"]


_D_NODE_ADDR = ("List of addresses reachable to the node. Queried from cloud provider, if available. More info: "
                "https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as "
                "mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is "
                "merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an "
                "example. Consumers should assume that addresses can change during the lifetime of a Node. However, "
                "there are some exceptions where this may not be possible, such as Pods that inherit a Node's "
                "address in its own status or consumers of the downward API (status.hostIP).")

BUILTIN: dict[str, tuple[list[Obj], Callable[[Obj, datetime], list[Any]]]] = {
    "namespaces": ([NAME_COL, _col("Status", "The status of the namespace"), AGE_COL], _namespace),
    "nodes": ([NAME_COL, _col("Status", "The status of the node"), _col("Roles", "The roles of the node"), AGE_COL,
               _col("Version", "Kubelet Version reported by the node."),
               _col("Internal-IP", _D_NODE_ADDR, priority=1), _col("External-IP", _D_NODE_ADDR, priority=1),
               _col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 "
                    "(wheezy)).", priority=1),
               _col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. "
                    "3.16.0-0.bpo.4-amd64).", priority=1),
               _col("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API "
                    "(e.g. containerd://1.4.2).", priority=1)], _node),
    "pods": ([NAME_COL, _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
              _col("Status", "The aggregate status of the containers in this pod."),
              _col("Restarts", "The number of times the containers in this pod have been restarted and when the "
                   "last container in this pod has restarted."), AGE_COL,
              _col("IP", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not "
                   "yet allocated.", priority=1),
              _col("Node", "NodeName indicates in which node this pod is scheduled.", priority=1),
              _col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node.",
                   priority=1),
              _col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.",
                   priority=1)], _pod),
    "persistentvolumes": ([NAME_COL, _col("Capacity", "capacity is the description of the persistent volume's "
                                          "resources and capacity."),
                           _col("Access Modes", "accessModes contains all ways the volume can be mounted."),
                           _col("Reclaim Policy", "persistentVolumeReclaimPolicy defines what happens to a "
                                "persistent volume when released from its claim."),
                           _col("Status", "phase indicates if a volume is available, bound to a claim, or released "
                                "by a claim."),
                           _col("Claim", "claimRef is part of a bi-directional binding between PersistentVolume and "
                                "PersistentVolumeClaim."),
                           _col("StorageClass", "StorageClass of the pv"),
                           _col("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
                           _col("Reason", "reason is a brief CamelCase string that describes any failure and is "
                                "meant for machine parsing and tidy display in the CLI."), AGE_COL,
                           _col("VolumeMode", "volumeMode defines if a volume is intended to be used with a "
                                "formatted filesystem or to remain in raw block state. Value of Filesystem is "
                                "implied when not included in spec.", priority=1)], _pv),
    "persistentvolumeclaims": ([NAME_COL, _col("Status", "phase represents the current phase of "
                                               "PersistentVolumeClaim."),
                                _col("Volume", "volumeName is the binding reference to the PersistentVolume backing "
                                     "this claim."),
                                _col("Capacity", "capacity represents the actual resources of the underlying "
                                     "volume."),
                                _col("Access Modes", "accessModes contains the actual access modes the volume "
                                     "backing the PVC has."),
                                _col("StorageClass", "StorageClass of the pvc"),
                                _col("VolumeAttributesClass", "VolumeAttributesClass of the pvc"), AGE_COL,
                                _col("VolumeMode", "volumeMode defines what type of volume is required by the claim."
                                     " Value of Filesystem is implied when not included in claim spec.",
                                     priority=1)], _pvc),
    "storageclasses": ([NAME_COL, _col("Provisioner", "provisioner indicates the type of the provisioner."),
                        _col("ReclaimPolicy", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned "
                             "PersistentVolumes of this storage class. Defaults to Delete."),
                        _col("VolumeBindingMode", "volumeBindingMode indicates how PersistentVolumeClaims should be "
                             "provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only "
                             "honored by servers that enable the VolumeScheduling feature."),
                        _col("AllowVolumeExpansion", "allowVolumeExpansion shows whether the storage class allow "
                             "volume expand."), AGE_COL], _storageclass),
    "csidrivers": ([NAME_COL, _col("AttachRequired", "attachRequired indicates this CSI volume driver requires an "
                                   "attach operation.", "boolean"),
                    _col("PodInfoOnMount", "podInfoOnMount indicates this CSI volume driver requires additional pod "
                         "information during mount operations.", "boolean"),
                    _col("StorageCapacity", "storageCapacity indicates that the CSI volume driver wants pod "
                         "scheduling to consider storage capacity.", "boolean"),
                    _col("TokenRequests", "tokenRequests indicates the CSI driver needs pods' service account "
                         "tokens."),
                    _col("RequiresRepublish", "requiresRepublish indicates the CSI driver wants NodePublishVolume "
                         "being periodically called.", "boolean"),
                    _col("Modes", "volumeLifecycleModes defines what kind of volumes this CSI volume driver "
                         "supports."), AGE_COL], _csidriver),
    "configmaps": ([NAME_COL, _col("Data", "Data contains the configuration data."), AGE_COL], _configmap),
    "secrets": ([NAME_COL, _col("Type", "Used to facilitate programmatic handling of secret data."),
                 _col("Data", "Data contains the secret data."), AGE_COL], _secret),
    "events": ([_col("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
                _col("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
                _col("Reason", "This should be a short, machine understandable string that gives the reason for the "
                     "transition into the object's current status."),
                _col("Object", "The object that this event is about."),
                _col("Subobject", "If referring to a piece of an object instead of an entire object, this string "
                     "should contain a valid JSON/Go field access statement.", priority=1),
                _col("Source", "The component reporting this event. Should be a short machine understandable "
                     "string.", priority=1),
                _col("Message", "A human-readable description of the status of this operation."),
                _col("First Seen", "The time at which the event was first recorded. (Time of server receipt is in "
                     "TypeMeta.)", priority=1),
                _col("Count", "The number of times this event has occurred.", priority=1),
                _col("Name", D_NAME, fmt="name", priority=1)], _event),
    "resourcequotas": ([NAME_COL, _col("Request", "Request represents a minimum amount of cpu/memory that a container "
                                       "may consume."),
                        _col("Limit", "Limits control the maximum amount of cpu/memory that a container may use "
                             "independent of contention on the node."), AGE_COL], _resourcequota),
    "serviceaccounts": ([NAME_COL, _col("Secrets", "Secrets is a list of the secrets in the same namespace that pods "
                                        "running using this ServiceAccount are allowed to use."), AGE_COL],
                        _serviceaccount),
    "leases": ([NAME_COL, _col("Holder", "The holder of the lease."), AGE_COL], _lease),
}
DEFAULT_TABLE: tuple[list[Obj], Callable[[Obj, datetime], list[Any]]] = (
    [NAME_COL, _col("Created At", D_AGE, "date")], _created_at)


# --- custom resources -----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=512)
def _compiled(path: str) -> Callable[[Any], list[Any]] | None:
    try:
        return compile_path(path)
    except JSONPathError:
        return None


def _cell_for(typ: str, value: Any, now: datetime) -> Any:
    if typ == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            import json

            return json.dumps(value, separators=(",", ":"))
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    if typ == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return None
    if typ == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if typ == "boolean":
        return value if isinstance(value, bool) else None
    if typ == "date":
        if isinstance(value, str):
            t = _parse_time(value)
            return human_duration((now - t).total_seconds()) if t else None
        return None
    return value


def custom_columns(version: Version) -> tuple[list[Obj], Callable[[Obj, datetime], list[Any]]]:
    cols = list(version.printer_columns)
    if not cols:
        return ([NAME_COL, _col("Age", D_AGE, "date")], lambda o, now: [
            _meta(o).get("name"), since(_meta(o).get("creationTimestamp"), now)])
    defs = [NAME_COL] + [_col(c["name"], c.get("description", ""), c.get("type", "string"), c.get("format", ""),
                               int(c.get("priority", 0))) for c in cols]
    getters = [(c.get("type", "string"), _compiled(c.get("jsonPath", ""))) for c in cols]

    def cells(o: Obj, now: datetime) -> list[Any]:
        out: list[Any] = [_meta(o).get("name")]
        for typ, getter in getters:
            vals = getter(o) if getter else []
            out.append(_cell_for(typ, vals[0], now) if vals else None)
        return out

    return defs, cells


def printer_for(rt: ResourceType, version: Version) -> tuple[list[Obj], Callable[[Obj, datetime], list[Any]]]:
    if rt.builtin:
        return BUILTIN.get(rt.storage_plural or rt.plural, DEFAULT_TABLE)
    return custom_columns(version)


def row_conditions(rt: ResourceType, obj: Obj) -> list[Obj] | None:
    if rt.builtin and rt.plural == "pods":
        return _pod_conditions(obj)
    return None


def now_utc() -> datetime:
    return datetime.now(UTC)
