"""Regenerate vdisk/apiserver/openapi_data/builtin.json: OpenAPI v3 schemas of the built-in kinds.

The schemas are the upstream Kubernetes v1.32 definitions (Apache-2.0), as published in the PyPI
package kubernetes-validate (`kubernetes-json-schema/v1.32.0-local/_definitions.json`), reduced to the
kinds vdisk serves and what they reference, and converted back from JSON Schema to OpenAPI v3 shapes
(`type: [x, "null"]` -> `type: x`, `$defs` -> `components/schemas`, `$ref` with siblings -> `allOf`).

    pip install kubernetes-validate==1.37.0 && python tools/gen_builtin_openapi.py
"""

from __future__ import annotations

import json
import pathlib
import sys

import kubernetes_validate  # type: ignore[import-not-found]

ROOTS = [
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.Node",
    "io.k8s.api.core.v1.Pod",
    "io.k8s.api.core.v1.PersistentVolume",
    "io.k8s.api.core.v1.PersistentVolumeClaim",
    "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Secret",
    "io.k8s.api.core.v1.Event",
    "io.k8s.api.core.v1.ResourceQuota",
    "io.k8s.api.core.v1.ServiceAccount",
    "io.k8s.api.storage.v1.StorageClass",
    "io.k8s.api.storage.v1.CSIDriver",
    "io.k8s.api.events.v1.Event",
    "io.k8s.api.coordination.v1.Lease",
    "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
]


def convert(node: object) -> object:
    if isinstance(node, list):
        return [convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, object] = {}
    for k, v in node.items():
        if k == "type" and isinstance(v, list):
            types = [t for t in v if t != "null"]
            out["type"] = types[0] if len(types) == 1 else types
        elif k == "$ref" and isinstance(v, str):
            out["$ref"] = "#/components/schemas/" + v.rsplit("/", 1)[-1]
        elif k == "additionalProperties" and v is False:
            continue
        else:
            out[k] = convert(v)
    if isinstance(out.get("$ref"), str) and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def refs(node: object, acc: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                acc.add(v.rsplit("/", 1)[-1])
            else:
                refs(v, acc)
    elif isinstance(node, list):
        for x in node:
            refs(x, acc)


def main() -> int:
    base = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.32.0-local"
    defs = json.loads((base / "_definitions.json").read_text())["$defs"]
    want: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in want:
            continue
        want.add(name)
        found: set[str] = set()
        refs(defs[name], found)
        todo.extend(found - want)
    schemas = {name: convert(defs[name]) for name in sorted(want)}
    out = pathlib.Path(__file__).resolve().parent.parent / "vdisk" / "apiserver" / "openapi_data" / "builtin.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"kubernetesVersion": "v1.32.0", "schemas": schemas}, sort_keys=True,
                              separators=(",", ":")))
    print(f"{out}: {len(schemas)} schemas, {out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
