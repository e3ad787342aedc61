"""API errors as Kubernetes `Status` objects.

Upstream: k8s.io/apimachinery pkg/api/errors/errors.go (constructors and message texts) and
pkg/util/validation/field/errors.go (field error formatting). kubectl prints
`Error from server (<reason>): <message>`, so the messages follow upstream word for word.

    APIError
     ├── NotFound (404), AlreadyExists (409), Conflict (409), Gone/Expired (410)
     ├── Invalid (422, details.causes name the fields), BadRequest (400)
     ├── Unauthorized (401), Forbidden (403), MethodNotAllowed (405)
     └── UnsupportedMediaType (415), RequestEntityTooLarge (413), InternalError (500)
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

Obj = dict[str, Any]


class APIError(Exception):
    """An error the API answers with a `Status` body."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.reason!r}, {self.message!r})"


def _details(name: str, group: str, plural: str, **extra: Any) -> Obj:
    d: Obj = {"name": name}
    if group:
        d["group"] = group
    d["kind"] = plural
    d.update(extra)
    return d


def qualified_resource(group: str, plural: str) -> str:
    """`persistentvolumeclaims` or `datavolumes.cdi.kubevirt.io`, as upstream names resources."""
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> APIError:
    return APIError(
        404, "NotFound", f'{qualified_resource(group, plural)} "{name}" not found', _details(name, group, plural)
    )


def already_exists(group: str, plural: str, name: str) -> APIError:
    return APIError(
        409,
        "AlreadyExists",
        f'{qualified_resource(group, plural)} "{name}" already exists',
        _details(name, group, plural),
    )


def conflict(group: str, plural: str, name: str, detail: str | None = None) -> APIError:
    detail = detail or "the object has been modified; please apply your changes to the latest version and try again"
    return APIError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(group, plural)} "{name}": {detail}',
        _details(name, group, plural),
    )


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def forbidden(group: str, plural: str, name: str, detail: str) -> APIError:
    target = f'{qualified_resource(group, plural)} "{name}"' if name else qualified_resource(group, plural)
    return APIError(403, "Forbidden", f"{target} is forbidden: {detail}", _details(name, group, plural))


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> APIError:
    return APIError(405, "MethodNotAllowed", message)


def gone_expired(message: str) -> APIError:
    return APIError(410, "Expired", message)


def too_large(limit: int) -> APIError:
    return APIError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def unsupported_media_type(message: str) -> APIError:
    return APIError(415, "UnsupportedMediaType", message)


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}")


def resource_not_found() -> APIError:
    """Unknown path or kind: what client-go shows as 'the server could not find the requested resource'."""
    return APIError(404, "NotFound", "the server could not find the requested resource", {})


# --- field errors (k8s.io/apimachinery/pkg/util/validation/field) -------------------------------------------


def _repr_value(value: Any) -> str:
    # Go's field.Error formats strings with %q and everything else with %#v-ish plain text.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        import json

        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value)
    import json

    return json.dumps(value, separators=(",", ":"), sort_keys=True)


_TYPE_TEXT = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueNotFound": "Not found",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "InternalError": "Internal error",
    "FieldValueTypeInvalid": "Invalid value",
}
_WITH_VALUE = {"FieldValueInvalid", "FieldValueNotSupported", "FieldValueDuplicate", "FieldValueNotFound",
               "FieldValueTypeInvalid", "FieldValueTooMany"}
_NO_VALUE = object()


@dataclass(frozen=True)
class FieldError:
    """One invalid field: `spec.pvc.accessModes: Required value: ...`."""

    type: str
    field: str
    detail: str = ""
    value: Any = dc_field(default=_NO_VALUE, compare=False)
    raw: bool = False  # the detail is the whole message (webhook-style causes, e.g. CDI's)

    def body(self) -> str:
        if self.raw:
            return self.detail
        text = _TYPE_TEXT.get(self.type, self.type)
        if self.type in _WITH_VALUE and self.value is not _NO_VALUE:
            text = f"{text}: {_repr_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()


def cause(path: str, message: str, type: str = "FieldValueInvalid") -> FieldError:
    """A cause whose message is given verbatim, as admission webhooks (CDI, KubeVirt, HPP) report them."""
    return FieldError(type, path, message, raw=True)


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, detail)


def invalid_value(path: str, value: Any, detail: str = "") -> FieldError:
    return FieldError("FieldValueInvalid", path, detail, value)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = ("supported values: " + ", ".join(f'"{s}"' for s in supported)) if supported else ""
    return FieldError("FieldValueNotSupported", path, detail, value)


def forbidden_field(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, "", value)


def too_many(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueTooMany", path, detail)


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> APIError:
    """422 Invalid, as `apierrors.NewInvalid(qualifiedKind, name, errs)`."""
    qualified_kind = f"{kind}.{group}" if group else kind
    texts = list(dict.fromkeys(str(e) for e in errors))  # utilerrors.NewAggregate de-duplicates messages
    if not texts:
        message = f'{qualified_kind} "{name}" is invalid'
    elif len(texts) == 1:
        message = f'{qualified_kind} "{name}" is invalid: {texts[0]}'
    else:
        message = f'{qualified_kind} "{name}" is invalid: [' + ", ".join(texts) + "]"
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]
    details: Obj = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = causes
    return APIError(422, "Invalid", message, details)
