"""API errors and field errors, worded as k8s.io/apimachinery pkg/api/errors and pkg/util/validation/field."""

from __future__ import annotations

import pytest

from vdisk.apiserver.errors import (
    APIError,
    FieldError,
    already_exists,
    cause,
    conflict,
    duplicate,
    forbidden_field,
    gone_expired,
    invalid,
    invalid_value,
    not_found,
    not_supported,
    required,
)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        pytest.param(required("spec.x"), "spec.x: Required value", id="required"),
        pytest.param(required("spec.x", "must be set for block volumes"),
                     "spec.x: Required value: must be set for block volumes", id="required-with-detail"),
        pytest.param(invalid_value("spec.x", "v", "detail"), 'spec.x: Invalid value: "v": detail', id="invalid"),
        pytest.param(invalid_value("spec.x", "v"), 'spec.x: Invalid value: "v"', id="invalid-without-detail"),
        pytest.param(invalid_value("spec.x", 'say "hi"'), 'spec.x: Invalid value: "say \\"hi\\""',
                     id="invalid-string-quoted-like-go"),
        pytest.param(invalid_value("spec.n", 5, "too big"), "spec.n: Invalid value: 5: too big", id="invalid-int"),
        pytest.param(invalid_value("spec.b", True), "spec.b: Invalid value: true", id="invalid-bool"),
        pytest.param(not_supported("spec.x", "v", ["a", "b"]),
                     'spec.x: Unsupported value: "v": supported values: "a", "b"', id="not-supported"),
        # field.NotSupported adds no detail when there are no valid values
        pytest.param(not_supported("spec.x", "v", []), 'spec.x: Unsupported value: "v"',
                     id="not-supported-without-values"),
        pytest.param(forbidden_field("spec.x", "may not be changed"), "spec.x: Forbidden: may not be changed",
                     id="forbidden"),
        pytest.param(duplicate("spec.x[1]", "a"), 'spec.x[1]: Duplicate value: "a"', id="duplicate"),
        pytest.param(required(""), "Required value", id="no-field"),
        pytest.param(cause("spec.pvc", "webhook says no"), "spec.pvc: webhook says no", id="verbatim-cause"),
    ],
)
def test_field_error_string_forms(error: FieldError, text: str) -> None:
    assert str(error) == text


def test_verbatim_cause_body_is_the_message() -> None:
    c = cause("spec.pvc", "Data volume should have either Source or SourceRef")
    assert c.body() == "Data volume should have either Source or SourceRef"
    assert c.type == "FieldValueInvalid"


def test_invalid_with_one_error_names_it_without_brackets() -> None:
    err = invalid("DataVolume", "cdi.kubevirt.io", "dv1", [required("spec.source")])
    assert err.code == 422
    assert err.reason == "Invalid"
    assert err.message == 'DataVolume.cdi.kubevirt.io "dv1" is invalid: spec.source: Required value'
    assert err.details == {"name": "dv1", "group": "cdi.kubevirt.io", "kind": "DataVolume",
                           "causes": [{"reason": "FieldValueRequired", "message": "Required value",
                                       "field": "spec.source"}]}


def test_invalid_with_several_errors_lists_them_in_brackets() -> None:
    errs = [required("spec.a"), invalid_value("spec.b", "x", "bad"), not_supported("spec.c", "y", ["z"])]
    err = invalid("PersistentVolumeClaim", "", "c1", errs)
    assert err.message == ('PersistentVolumeClaim "c1" is invalid: [spec.a: Required value, '
                           'spec.b: Invalid value: "x": bad, spec.c: Unsupported value: "y": supported values: "z"]')
    assert err.details == {"name": "c1", "kind": "PersistentVolumeClaim", "causes": [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.a"},
        {"reason": "FieldValueInvalid", "message": 'Invalid value: "x": bad', "field": "spec.b"},
        {"reason": "FieldValueNotSupported", "message": 'Unsupported value: "y": supported values: "z"',
         "field": "spec.c"},
    ]}


def test_invalid_with_repeated_error_states_it_once_but_keeps_every_cause() -> None:
    """ErrorList.ToAggregate drops repeated messages; NewInvalid builds causes from the full list."""
    err = invalid("Pod", "", "p", [required("spec.x"), required("spec.x")])
    assert err.message == 'Pod "p" is invalid: spec.x: Required value'
    assert err.details is not None and len(err.details["causes"]) == 2


def test_invalid_without_errors_says_only_invalid() -> None:
    """NewInvalid: a nil aggregate gives `<kind> "<name>" is invalid`."""
    assert invalid("Pod", "", "p", []).message == 'Pod "p" is invalid'


def test_status_body_is_a_failure_status() -> None:
    err = invalid("Pod", "", "p", [required("spec.x")])
    assert err.status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'Pod "p" is invalid: spec.x: Required value', "reason": "Invalid", "code": 422,
        "details": {"name": "p", "kind": "Pod",
                    "causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.x"}]},
    }


def test_status_without_details_has_no_details_key() -> None:
    assert "details" not in gone_expired("too old resource version: 1 (5)").status()


@pytest.mark.parametrize(
    ("err", "code", "reason", "message"),
    [
        pytest.param(not_found("", "persistentvolumeclaims", "a"), 404, "NotFound",
                     'persistentvolumeclaims "a" not found', id="not-found-core"),
        pytest.param(not_found("cdi.kubevirt.io", "datavolumes", "dv"), 404, "NotFound",
                     'datavolumes.cdi.kubevirt.io "dv" not found', id="not-found-group"),
        pytest.param(already_exists("", "pods", "p"), 409, "AlreadyExists", 'pods "p" already exists',
                     id="already-exists"),
        pytest.param(conflict("", "pods", "p"), 409, "Conflict",
                     'Operation cannot be fulfilled on pods "p": the object has been modified; please apply your '
                     'changes to the latest version and try again', id="conflict"),
        pytest.param(gone_expired("too old resource version: 1 (5)"), 410, "Expired",
                     "too old resource version: 1 (5)", id="expired"),
    ],
)
def test_api_error_constructors_word_messages_as_upstream(err: APIError, code: int, reason: str,
                                                           message: str) -> None:
    assert (err.code, err.reason, err.message) == (code, reason, message)
