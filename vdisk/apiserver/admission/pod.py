"""Pod: the defaults the API server sets on create (the node agent fills in the rest of status).

Upstream: k8s pkg/apis/core/v1/defaults.go (SetDefaults_PodSpec, SetDefaults_Container) and
pkg/registry/core/pod/strategy.go (PrepareForCreate: status phase Pending, QoS class).
"""

from __future__ import annotations

from typing import Any

from ...quantity import Quantity, QuantityError
from ..errors import FieldError, required
from . import CREATE, Request, mutator, validator

Obj = dict[str, Any]


def qos_class(spec: Obj) -> str:
    """Guaranteed, Burstable or BestEffort, as k8s pkg/apis/core/helper/qos."""
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if any(_nonzero(v) for v in list(req.values()) + list(lim.values())):
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _nonzero(v: Any) -> bool:
    try:
        return Quantity.parse(v).value != 0
    except QuantityError:
        return True


@mutator("", "pods")
def default_pod(req: Request) -> None:
    obj = req.obj
    assert obj is not None
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(c, dict):
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = c.get("image") or ""
            c.setdefault("imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image.split("/")[-1]
                         else "IfNotPresent")
            c.setdefault("resources", {})
    if req.operation == CREATE:
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


@validator("", "pods")
def validate_pod(req: Request) -> list[FieldError]:
    obj = req.obj
    if obj is None or req.subresource:
        return []
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    containers = spec.get("containers") or []
    if not containers:
        errs.append(required("spec.containers"))
    for i, c in enumerate(containers):
        if not c.get("name"):
            errs.append(required(f"spec.containers[{i}].name"))
        if not c.get("image"):
            errs.append(required(f"spec.containers[{i}].image"))
    return errs
