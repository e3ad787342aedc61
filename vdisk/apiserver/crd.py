"""CustomResourceDefinitions: turning a CRD object into a served kind, and the CRD's own status.

Upstream: apiextensions-apiserver pkg/apis/apiextensions/validation/validation.go (what a CRD must
satisfy), pkg/controller/establish and status (NamesAccepted/Established, acceptedNames,
storedVersions). vdisk establishes a CRD synchronously when it is stored: there is one server.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import FieldError, invalid_value, required
from .registry import ResourceType, Version

Obj = dict[str, Any]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def resource_type_from_crd(crd: Obj) -> ResourceType:
    spec = crd["spec"]
    names = spec["names"]
    versions: list[Version] = []
    subresources: set[str] = set()
    for v in spec.get("versions") or []:
        sub = v.get("subresources") or spec.get("subresources") or {}
        if "status" in sub:
            subresources.add("status")
        if "scale" in sub:
            subresources.add("scale")
        schema = (v.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema")
        columns = v.get("additionalPrinterColumns") or spec.get("additionalPrinterColumns") or []
        versions.append(Version(
            name=v["name"], served=bool(v.get("served", True)), storage=bool(v.get("storage", False)),
            schema=schema, printer_columns=tuple(columns), deprecated=bool(v.get("deprecated", False)),
            deprecation_warning=v.get("deprecationWarning"),
        ))
    versions.sort(key=lambda ver: _priority(ver.name))
    selectable: dict[str, str] = {}
    for v in spec.get("versions") or []:
        for f in v.get("selectableFields") or []:
            p = f.get("jsonPath", "")
            selectable[p.lstrip(".")] = p.lstrip(".")
    return ResourceType(
        group=spec["group"], plural=names["plural"], singular=names.get("singular") or names["kind"].lower(),
        kind=names["kind"], list_kind=names.get("listKind") or f"{names['kind']}List",
        namespaced=spec.get("scope", "Namespaced") == "Namespaced", versions=tuple(versions),
        short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
        subresources=frozenset(subresources), builtin=False,
        extra={"crd": crd["metadata"]["name"], "selectable": selectable},
    )


def _priority(v: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0)
    return ({None: 0, "beta": 1, "alpha": 2}[m.group(2)], -int(m.group(1)), -int(m.group(3) or 0))


def validate_crd(crd: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = crd.get("spec") or {}
    group = spec.get("group") or ""
    names = spec.get("names") or {}
    plural = names.get("plural") or ""
    name = (crd.get("metadata") or {}).get("name", "")
    if not group:
        errs.append(required("spec.group"))
    elif "." not in group:
        errs.append(invalid_value("spec.group", group, "should be a domain with at least one dot"))
    if not plural:
        errs.append(required("spec.names.plural"))
    elif not _DNS_LABEL.match(plural):
        errs.append(invalid_value("spec.names.plural", plural, "a lowercase RFC 1123 label must consist of lower "
                                  "case alphanumeric characters or '-', and must start and end with an "
                                  "alphanumeric character"))
    if not names.get("kind"):
        errs.append(required("spec.names.kind"))
    if group and plural and name != f"{plural}.{group}":
        errs.append(invalid_value("metadata.name", name, "must be spec.names.plural+\".\"+spec.group"))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        errs.append(FieldError("FieldValueNotSupported", "spec.scope", 'supported values: "Cluster", "Namespaced"',
                               scope))
    versions = spec.get("versions") or []
    if not versions:
        errs.append(required("spec.versions", "must have exactly one version marked as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errs.append(invalid_value("spec.versions", "", "must have exactly one version marked as storage version"))
    for i, v in enumerate(versions):
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errs.append(required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
        elif schema.get("type") != "object":
            errs.append(invalid_value(f"spec.versions[{i}].schema.openAPIV3Schema.type", schema.get("type"),
                                      "must be object at the root"))
    return errs


def established_status(crd: Obj, now: str) -> Obj:
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    storage = next((v["name"] for v in spec.get("versions", []) if v.get("storage")), None)
    old = crd.get("status") or {}
    stored = list(old.get("storedVersions") or [])
    if storage and storage not in stored:
        stored.append(storage)
    conds = {c["type"]: c for c in old.get("conditions") or []}

    def cond(typ: str, reason: str, message: str) -> Obj:
        prev = conds.get(typ)
        if prev and prev.get("status") == "True":
            return prev
        return {"type": typ, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now}

    return {
        "acceptedNames": names,
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    }
