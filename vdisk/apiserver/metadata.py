"""ObjectMeta rules: names, generateName, labels, annotations, server-owned fields.

Upstream: k8s.io/apimachinery pkg/api/validation/objectmeta.go and pkg/util/validation/validation.go
(messages quoted from there), pkg/apiserver/.../rest/create.go (generateName).
"""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from .errors import FieldError, invalid_value, required

Obj = dict[str, Any]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")

# Go's rand.String alphabet for generateName suffixes (k8s.io/apimachinery/pkg/util/rand): no vowels, no
# confusable digits, so generated names never spell words.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_rng = random.SystemRandom()

SERVER_OWNED = ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp",
                "deletionGracePeriodSeconds", "selfLink", "managedFields")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_name(prefix: str) -> str:
    # upstream trims the base so that base+5 fits 63 characters
    base = prefix[:58] if len(prefix) > 58 else prefix
    return base + "".join(_rng.choice(_SUFFIX_ALPHABET) for _ in range(5))


def is_dns1123_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.match(name))


def is_dns1123_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1123_LABEL.match(name))


def validate_name(name: str, *, label: bool = False, path: str = "metadata.name") -> list[FieldError]:
    if label:
        if not is_dns1123_label(name):
            detail = "must be no more than 63 characters" if len(name) > 63 else LABEL_MSG
            return [invalid_value(path, name, detail)]
        return []
    if not is_dns1123_subdomain(name):
        detail = "must be no more than 253 characters" if len(name) > 253 else SUBDOMAIN_MSG
        return [invalid_value(path, name, detail)]
    return []


QUALIFIED_NAME_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                      "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
                      "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


def _validate_qualified_key(key: str, path: str, shown: str | None = None) -> list[FieldError]:
    """IsQualifiedName: an optional DNS-subdomain prefix and a name part of at most 63 characters."""
    shown = key if shown is None else shown
    has_prefix = "/" in key
    prefix, _, name = key.rpartition("/")
    errs: list[FieldError] = []
    if has_prefix and not prefix:
        errs.append(invalid_value(path, shown, "prefix part must be non-empty"))
    elif prefix and not is_dns1123_subdomain(prefix):
        errs.append(invalid_value(path, shown, "prefix part " + SUBDOMAIN_MSG))
    if not name:
        errs.append(invalid_value(path, shown, "name part must be non-empty"))
    elif len(name) > 63:
        errs.append(invalid_value(path, shown, "name part must be no more than 63 characters"))
    elif not _QUALIFIED_NAME.match(name):
        errs.append(invalid_value(path, shown, QUALIFIED_NAME_MSG))
    return errs


def validate_meta(meta: Obj, *, namespaced: bool, label_name: bool = False) -> list[FieldError]:
    """Names, labels and annotations of an incoming object (after generateName was applied)."""
    errs: list[FieldError] = []
    name = meta.get("name")
    if not name:
        errs.append(required("metadata.name", "name or generateName is required"))
    else:
        errs.extend(validate_name(name, label=label_name))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        errs.append(invalid_value("metadata.labels", labels, "must be a map"))
        labels = {}
    for k, v in labels.items():
        errs.extend(_validate_qualified_key(k, "metadata.labels"))
        if isinstance(v, str) and len(v) > 63 and _LABEL_VALUE.match(v):
            errs.append(invalid_value("metadata.labels", v, "must be no more than 63 characters"))
        elif not isinstance(v, str) or not _LABEL_VALUE.match(v):
            errs.append(invalid_value("metadata.labels", v, "a valid label must be an empty string or consist of "
                                      "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                                      "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex "
                                      "used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"))
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        errs.append(invalid_value("metadata.annotations", annotations, "must be a map"))
        annotations = {}
    total = 0
    for k, v in annotations.items():
        errs.extend(_validate_qualified_key(k.lower(), "metadata.annotations", shown=k))
        total += len(k) + len(v if isinstance(v, str) else "")
    if total > 256 * 1024:
        errs.append(FieldError("FieldValueTooLong", "metadata.annotations", "may not be more than 262144 bytes"))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for fld in ("apiVersion", "kind", "name", "uid"):
            if not (isinstance(ref, dict) and ref.get(fld)):
                errs.append(required(f"metadata.ownerReferences[{i}].{fld}"))
    controllers = [r for r in meta.get("ownerReferences") or [] if isinstance(r, dict) and r.get("controller")]
    if len(controllers) > 1:
        errs.append(invalid_value("metadata.ownerReferences", "", "Only one reference can have Controller set to "
                                  "true. Found \"true\" in references for " +
                                  " and ".join(f"{r.get('kind')}/{r.get('name')}" for r in controllers)))
    for i, f in enumerate(meta.get("finalizers") or []):
        if not isinstance(f, str) or not f:
            errs.append(invalid_value(f"metadata.finalizers[{i}]", f, "must be a non-empty string"))
    return errs
