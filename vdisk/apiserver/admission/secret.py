"""Secret: `type` defaults to Opaque and `stringData` is folded into base64 `data`.

Upstream: k8s pkg/apis/core/v1/defaults.go (SetDefaults_Secret) and conversion.go (stringData).
"""

from __future__ import annotations

import base64

from ..errors import FieldError, forbidden_field, invalid_value
from . import UPDATE, Request, mutator, validator


@mutator("", "secrets")
def default_secret(req: Request) -> None:
    obj = req.obj
    assert obj is not None
    if not obj.get("type"):
        obj["type"] = "Opaque"
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {}) or {}
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data


@validator("", "secrets")
def validate_secret(req: Request) -> list[FieldError]:
    obj = req.obj
    assert obj is not None
    errs: list[FieldError] = []
    for k, v in (obj.get("data") or {}).items():
        try:
            base64.b64decode(v, validate=True)
        except Exception:
            errs.append(invalid_value(f"data[{k}]", "<secret contents redacted>", "illegal base64 data"))
    if req.operation == UPDATE and req.old is not None:
        if req.old.get("type") != obj.get("type"):
            errs.append(invalid_value("type", obj.get("type"), "field is immutable"))
        if req.old.get("immutable") and obj.get("data") != req.old.get("data"):
            errs.append(forbidden_field("data", "field is immutable when `immutable` is set"))
    return errs
