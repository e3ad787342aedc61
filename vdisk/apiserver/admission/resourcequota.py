"""ResourceQuota admission: pods and claims over a namespace's quota are refused (R15's precondition).

Upstream: k8s plugin/pkg/admission/resourcequota (controller.go checkRequest) with its messages:
`exceeded quota: <q>, requested: <r>=<v>, used: <r>=<v>, limited: <r>=<v>` and
`failed quota: <q>: must specify limits.cpu for: <containers>`. Usage is counted from the store at
admission time, so two creates racing each other are still checked one after the other.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ...quota import claim_usage, fmt, missing_compute, namespace_usage, pod_usage
from .. import errors
from ..errors import FieldError
from . import CREATE, UPDATE, Request, validator

Obj = dict[str, Any]


def _check(req: Request, delta: dict[str, Fraction], pod: Obj | None, only: set[str] | None = None) -> None:
    """Refuse if usage (without this object) + `delta` exceeds a quota, for the resources in `only`."""
    quotas = req.lookup.list("", "resourcequotas", req.namespace)
    if not quotas:
        return
    usage: dict[str, Fraction] | None = None
    for q in quotas:
        hard: dict[str, Any] = (q.get("spec") or {}).get("hard") or {}
        qname = q["metadata"]["name"]
        if pod is not None:
            missing = missing_compute(pod, hard)
            if missing:
                raise errors.forbidden(req.rt.group, req.rt.plural, req.name,
                                       f"failed quota: {qname}: must specify {'; '.join(missing)}")
        relevant = sorted(k for k in hard if delta.get(k) and (only is None or k in only))
        if not relevant:
            continue
        if usage is None:
            usage = namespace_usage(req.lookup.list("", "pods", req.namespace),
                                    [c for c in req.lookup.list("", "persistentvolumeclaims", req.namespace)
                                     if c["metadata"]["name"] != req.name])
        over = []
        for k in relevant:
            try:
                from ...quantity import Quantity

                limit = Quantity.parse(hard[k]).value
            except Exception:
                continue
            if usage.get(k, Fraction(0)) + delta[k] > limit:
                over.append(k)
        if over:
            requested = ",".join(f"{k}={fmt(delta[k], hard[k])}" for k in over)
            used = ",".join(f"{k}={fmt(usage.get(k, Fraction(0)), hard[k])}" for k in over)
            limited = ",".join(f"{k}={hard[k]}" for k in over)
            raise errors.forbidden(req.rt.group, req.rt.plural, req.name,
                                   f"exceeded quota: {qname}, requested: {requested}, used: {used}, limited: {limited}")


@validator("", "pods", operations=(CREATE,))
def admit_pod(req: Request) -> list[FieldError]:
    if req.obj is not None:
        _check(req, pod_usage(req.obj), req.obj)
    return []


@validator("", "persistentvolumeclaims", operations=(CREATE, UPDATE))
def admit_claim(req: Request) -> list[FieldError]:
    if req.obj is None or req.subresource:
        return []
    new = claim_usage(req.obj)
    grown = None
    if req.operation == UPDATE:  # an existing claim is checked only for what it grows by
        old = claim_usage(req.old or {})
        grown = {k for k, v in new.items() if v > old.get(k, Fraction(0))}
    _check(req, new, None, grown)
    return []
