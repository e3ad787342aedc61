"""ResourceQuota usage: what pods and claims consume, shared by the admission plugin and the controller.

Upstream: k8s pkg/quota/v1/evaluator/core (pods.go, persistent_volume_claims.go): pods count their
requests and limits of cpu and memory (and `pods`) while not Succeeded/Failed; claims count
`requests.storage`, `persistentvolumeclaims` and the per-class forms
`<class>.storageclass.storage.k8s.io/requests.storage` and `.../persistentvolumeclaims`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .quantity import Quantity, QuantityError, canonical

Obj = dict[str, Any]
COMPUTE = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory")


def _q(value: Any) -> Fraction:
    try:
        return Quantity.parse(value).value
    except (QuantityError, TypeError):
        return Fraction(0)


def pod_usage(pod: Obj) -> dict[str, Fraction]:
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return {}
    spec = pod.get("spec") or {}
    totals: dict[str, Fraction] = {"pods": Fraction(1), "count/pods": Fraction(1)}

    def add(containers: list[Obj], combine: str) -> None:
        sums: dict[str, Fraction] = {}
        for c in containers:
            res = c.get("resources") or {}
            for section in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    v = (res.get(section) or {}).get(r)
                    if v is not None:
                        key = f"{section}.{r}"
                        sums[key] = (sums.get(key, Fraction(0)) + _q(v)) if combine == "sum" else \
                            max(sums.get(key, Fraction(0)), _q(v))
        for k, v in sums.items():
            totals[k] = max(totals.get(k, Fraction(0)), v) if combine == "max" else totals.get(k, Fraction(0)) + v

    add(spec.get("containers") or [], "sum")
    add(spec.get("initContainers") or [], "max")
    for r in ("cpu", "memory"):
        if f"requests.{r}" in totals:
            totals[r] = totals[f"requests.{r}"]
    return totals


def claim_usage(pvc: Obj) -> dict[str, Fraction]:
    spec = pvc.get("spec") or {}
    size = _q(((spec.get("resources") or {}).get("requests") or {}).get("storage", 0))
    cls = spec.get("storageClassName") or ""
    out = {"persistentvolumeclaims": Fraction(1), "requests.storage": size,
           "count/persistentvolumeclaims": Fraction(1)}
    if cls:
        out[f"{cls}.storageclass.storage.k8s.io/requests.storage"] = size
        out[f"{cls}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Fraction(1)
    return out


def add_usage(total: dict[str, Fraction], more: dict[str, Fraction]) -> None:
    for k, v in more.items():
        total[k] = total.get(k, Fraction(0)) + v


def namespace_usage(pods: list[Obj], claims: list[Obj]) -> dict[str, Fraction]:
    total: dict[str, Fraction] = {}
    for p in pods:
        add_usage(total, pod_usage(p))
    for c in claims:
        add_usage(total, claim_usage(c))
    return total


def fmt(value: Fraction, like: Any) -> str:
    """Print a usage in the format of the quota's own hard value ("1Gi" binary, "500m" decimal)."""
    try:
        fmt_of = Quantity.parse(like).format
    except (QuantityError, TypeError):
        fmt_of = "DecimalSI"
    return canonical(value, fmt_of)


def missing_compute(pod: Obj, hard: dict[str, Any]) -> list[str]:
    """`must specify limits.cpu for: c1` parts, for compute resources the quota tracks but a container omits."""
    out = []
    containers = (pod.get("spec") or {}).get("containers") or []
    for res in sorted(k for k in hard if k in ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory")):
        section, name = res.split(".")
        lacking = [c.get("name", "") for c in containers if name not in ((c.get("resources") or {}).get(section) or {})]
        if lacking:
            out.append(f"{res} for: {','.join(lacking)}")
    return out
