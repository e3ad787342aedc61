"""Shared storage vocabulary: annotation names, node matching, claim/volume matching, pool reports.

Pure functions with no I/O, used by the controllers (binding, scheduling, provisioning hand-off) and
by the node agent. Upstream counterparts: k8s pkg/controller/volume/persistentvolume (index.go
findBestMatchForClaim, util.go), component-helpers/scheduling/corev1/nodeaffinity, and the HPP CSI
driver's topology.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .labels import label_selector_matches
from .quantity import Quantity, QuantityError

Obj = dict[str, Any]

ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_POOLS = "vdisk.io/storage-pools"  # a node agent's report of its pools (JSON list of PoolState)
ANN_KUBELET_TOKEN = "vdisk.io/kubelet-token"  # bearer token the API server presents to the node agent
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
PROVISIONER_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
LABEL_HOSTNAME = "kubernetes.io/hostname"
HPP_NAMESPACE = "openshift-cnv"  # where the HostPathProvisioner's pool claims live
ANN_TEMPLATE_MOUNTS = "vdisk.io/hpp-template-mounts"  # a node's mounted template pools (comma list)

HPP_PROVISIONER = "kubevirt.io.hostpath-provisioner"
LOCAL_BLOCK_PROVISIONER = "vdisk.io/local-block"
OUR_PROVISIONERS = (HPP_PROVISIONER, LOCAL_BLOCK_PROVISIONER)
LOCAL_BLOCK_POOL = "vdisk.io/local-block"  # the pseudo-pool holding local-block loop files
HPP_LEGACY_POOL = "legacy"  # HPP: a StorageClass without storagePool uses this pool


def meta(o: Obj) -> Obj:
    return o.get("metadata") or {}


def annotations_of(o: Obj) -> dict[str, str]:
    return meta(o).get("annotations") or {}


def labels(o: Obj) -> dict[str, str]:
    return meta(o).get("labels") or {}


def size_bytes(value: Any) -> int:
    try:
        return Quantity.parse(value).bytes if value is not None else 0
    except QuantityError:
        return 0


def claim_request(pvc: Obj) -> int:
    return size_bytes((((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage"))


def volume_capacity(pv: Obj) -> int:
    return size_bytes(((pv.get("spec") or {}).get("capacity") or {}).get("storage"))


def claim_class(pvc: Obj) -> str:
    ann = annotations_of(pvc)
    if "volume.beta.kubernetes.io/storage-class" in ann:
        return ann["volume.beta.kubernetes.io/storage-class"]
    return (pvc.get("spec") or {}).get("storageClassName") or ""


def volume_class(pv: Obj) -> str:
    ann = annotations_of(pv)
    if "volume.beta.kubernetes.io/storage-class" in ann:
        return ann["volume.beta.kubernetes.io/storage-class"]
    return (pv.get("spec") or {}).get("storageClassName") or ""


def volume_mode(o: Obj) -> str:
    return (o.get("spec") or {}).get("volumeMode") or "Filesystem"


def pool_of_class(sc: Obj) -> str:
    """The pool a StorageClass provisions from: HPP's storagePool parameter, or the local-block pool."""
    if sc.get("provisioner") == LOCAL_BLOCK_PROVISIONER:
        return LOCAL_BLOCK_POOL
    return (sc.get("parameters") or {}).get("storagePool") or HPP_LEGACY_POOL


# --- node selection -----------------------------------------------------------------------------------------

def _requirement_matches(req: Obj, values_of: dict[str, str]) -> bool:
    key, op, vals = str(req.get("key") or ""), req.get("operator"), req.get("values") or []
    has = key in values_of
    if op == "In":
        return has and values_of[key] in vals
    if op == "NotIn":
        return not has or values_of[key] not in vals
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt") and has and vals:
        try:
            a, b = int(values_of[key]), int(vals[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_selector_term_matches(term: Obj, node: Obj) -> bool:
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term matches nothing (upstream)
    node_labels = labels(node)
    if not all(_requirement_matches(r, node_labels) for r in exprs):
        return False
    return all(_requirement_matches(r, {"metadata.name": meta(node).get("name", "")}) for r in fields)


def node_selector_matches(selector: Obj | None, node: Obj) -> bool:
    """A NodeSelector (a list of ORed terms); None means no constraint."""
    if not selector:
        return True
    return any(node_selector_term_matches(t, node) for t in selector.get("nodeSelectorTerms") or [])


def volume_fits_node(pv: Obj, node: Obj) -> bool:
    return node_selector_matches(((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required"), node)


def pod_fits_node_selector(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    node_labels = labels(node)
    for k, v in (spec.get("nodeSelector") or {}).items():
        if node_labels.get(k) != v:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    return node_selector_matches(required, node)


def node_is_ready(node: Obj) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def hostname_affinity(node_name: str) -> Obj:
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": LABEL_HOSTNAME, "operator": "In", "values": [node_name]}]}]}}


# --- pools ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolState:
    """One storage pool on one node, as its node agent reports it in the Node annotation."""

    name: str
    path: str
    ready: bool
    capacity: int = 0  # bytes of the filesystem holding the pool
    allocated: int = 0  # bytes promised to volumes of this pool on this node
    available: int = 0  # free bytes of the filesystem
    shared_with_os: bool = False
    message: str = ""

    @property
    def free(self) -> int:
        """What a new volume may still claim: capacity not promised to other volumes, and really free."""
        return max(0, min(self.capacity - self.allocated, self.available))

    def to_json(self) -> Obj:
        return {"name": self.name, "path": self.path, "ready": self.ready, "capacity": self.capacity,
                "allocated": self.allocated, "available": self.available, "sharedWithOS": self.shared_with_os,
                "message": self.message}


def node_pools(node: Obj) -> dict[str, PoolState]:
    raw = annotations_of(node).get(ANN_POOLS)
    if not raw:
        return {}
    try:
        items = json.loads(raw)
    except ValueError:
        return {}
    out = {}
    for p in items:
        out[p["name"]] = PoolState(p["name"], p.get("path", ""), bool(p.get("ready")), int(p.get("capacity", 0)),
                                   int(p.get("allocated", 0)), int(p.get("available", 0)),
                                   bool(p.get("sharedWithOS")), p.get("message", ""))
    return out


# --- claim and volume matching --------------------------------------------------------------------------------

def volume_matches_claim(pv: Obj, pvc: Obj, node: Obj | None = None) -> bool:
    """Could `pv` satisfy `pvc`? (class, access modes, volume mode, size, selector, node)."""
    spec, cspec = pv.get("spec") or {}, pvc.get("spec") or {}
    if volume_class(pv) != claim_class(pvc):
        return False
    if volume_mode(pv) != volume_mode(pvc):
        return False
    if not set(cspec.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    if volume_capacity(pv) < claim_request(pvc):
        return False
    if not label_selector_matches(cspec.get("selector"), labels(pv)):
        return False
    if node is not None and not volume_fits_node(pv, node):
        return False
    return True


def is_prebound_to(pv: Obj, pvc: Obj) -> bool:
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    m = meta(pvc)
    return (ref.get("namespace") == m.get("namespace") and ref.get("name") == m.get("name")
            and (not ref.get("uid") or ref.get("uid") == m.get("uid")))


def best_volume(pvs: list[Obj], pvc: Obj, node: Obj | None = None) -> Obj | None:
    """A pre-bound volume for this claim, else the smallest available one that fits (findBestMatchForClaim)."""
    candidates = []
    for pv in pvs:
        if meta(pv).get("deletionTimestamp"):
            continue
        if is_prebound_to(pv, pvc):
            if volume_matches_claim(pv, pvc, node):
                return pv
            continue
        if (pv.get("spec") or {}).get("claimRef"):
            continue
        if (pv.get("status") or {}).get("phase") not in ("Available", "Pending", None, ""):
            continue
        if volume_matches_claim(pv, pvc, node):
            candidates.append(pv)
    if not candidates:
        return None
    return min(candidates, key=lambda p: (volume_capacity(p), meta(p).get("name", "")))


def template_claim_name(pool: str, node: str) -> str:
    """HPP's pool claim name: hpp-pool-<pool>-<node>, hashed when over 63 characters (storagepool.go)."""
    import zlib

    base, suffix = f"hpp-pool-{pool}", node
    name = f"{base}-{suffix}"
    if len(name) <= 63:
        return name
    digest = f"{zlib.crc32(base.encode()) & 0xffffffff:08x}"
    if len(suffix) < 63 - 10:
        return f"{base[:63 - 10 - len(suffix)]}-{digest}-{suffix}"
    return f"{name[:54]}-{zlib.crc32(name.encode()) & 0xffffffff:08x}"


def node_matches_workload(hpp: Obj, node: Obj) -> bool:
    selector = ((hpp.get("spec") or {}).get("workload") or {}).get("nodeSelector") or {}
    node_labels = meta(node).get("labels") or {}
    return all(node_labels.get(k) == v for k, v in selector.items())


TOPOLOGY_KEY = "topology.hostpath.csi/node"  # the HPP CSI driver's node topology key


def pv_node(pv: Obj) -> str | None:
    """The one node a local PV lives on: its hostname/topology node affinity with a single value."""
    required = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") in (TOPOLOGY_KEY, "kubernetes.io/hostname") and expr.get("operator") == "In":
                values = expr.get("values") or []
                if len(values) == 1:
                    return str(values[0])
    return None
