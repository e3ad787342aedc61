"""Namespace: phase Active on create and the `kubernetes` finalizer that the namespace lifecycle removes.

Upstream: k8s pkg/registry/core/namespace/strategy.go (PrepareForCreate).
"""

from __future__ import annotations

from . import CREATE, Request, mutator


@mutator("", "namespaces")
def default_namespace(req: Request) -> None:
    obj = req.obj
    assert obj is not None
    if req.operation == CREATE:
        obj["status"] = {"phase": "Active"}
        spec = obj.setdefault("spec", {})
        fins = spec.get("finalizers") or []
        if "kubernetes" not in fins:
            spec["finalizers"] = [*fins, "kubernetes"]
    labels = obj["metadata"].setdefault("labels", {})
    # Set by the NamespaceDefaultLabelName feature (GA since 1.22).
    labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
