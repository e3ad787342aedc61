"""Event: an involved object is required; counts and timestamps default as the event recorder sets them.

Upstream: k8s pkg/apis/core/validation/events.go (ValidateEventCreate).
"""

from __future__ import annotations

from ..errors import FieldError, required
from . import Request, validator


@validator("", "events")
def validate_event(req: Request) -> list[FieldError]:
    obj = req.obj
    assert obj is not None
    errs: list[FieldError] = []
    inv = obj.get("involvedObject")
    if not isinstance(inv, dict) or not inv:
        errs.append(required("involvedObject"))
    if not obj.get("reason") and not obj.get("message"):
        errs.append(required("reason", "reason or message is required"))
    return errs
