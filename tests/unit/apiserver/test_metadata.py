"""ObjectMeta rules, with messages from k8s.io/apimachinery pkg/util/validation and pkg/api/validation."""

from __future__ import annotations

from typing import Any

import pytest

from vdisk.apiserver.metadata import LABEL_MSG, SUBDOMAIN_MSG, generate_name, validate_meta, validate_name

Obj = dict[str, Any]

ALPHABET = set("bcdfghjklmnpqrstvwxz2456789")  # k8s.io/apimachinery/pkg/util/rand alphanums
QUALIFIED_NAME_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                      "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                      "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                   "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def test_subdomain_message_is_upstream_text() -> None:
    assert SUBDOMAIN_MSG == (
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


@pytest.mark.parametrize(
    "name",
    [pytest.param("a", id="one-char"), pytest.param("disk-1", id="dash"), pytest.param("a.b.c", id="dots"),
     pytest.param("1abc", id="leading-digit"), pytest.param("a" * 253, id="max-length")],
)
def test_valid_subdomain_names_pass(name: str) -> None:
    assert validate_name(name) == []


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        pytest.param("Disk", SUBDOMAIN_MSG, id="upper-case"),
        pytest.param("-disk", SUBDOMAIN_MSG, id="leading-dash"),
        pytest.param("disk.", SUBDOMAIN_MSG, id="trailing-dot"),
        pytest.param("a_b", SUBDOMAIN_MSG, id="underscore"),
        pytest.param("a" * 254, "must be no more than 253 characters", id="too-long"),
    ],
)
def test_invalid_subdomain_name_is_invalid_value(name: str, detail: str) -> None:
    errs = validate_name(name)
    assert [str(e) for e in errs] == [f'metadata.name: Invalid value: "{name}": {detail}']


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        pytest.param("a.b", LABEL_MSG, id="dot"),
        pytest.param("Ns", LABEL_MSG, id="upper-case"),
        pytest.param("a" * 64, "must be no more than 63 characters", id="too-long"),
    ],
)
def test_invalid_label_name_is_invalid_value(name: str, detail: str) -> None:
    errs = validate_name(name, label=True, path="metadata.name")
    assert [str(e) for e in errs] == [f'metadata.name: Invalid value: "{name}": {detail}']


def test_label_names_up_to_63_characters_pass() -> None:
    assert validate_name("a" * 63, label=True) == []


def test_label_message_is_upstream_text() -> None:
    assert LABEL_MSG == (
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
        "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


@pytest.mark.parametrize(
    ("prefix", "base"),
    [pytest.param("disk-", "disk-", id="short"), pytest.param("p" * 70, "p" * 58, id="trimmed-to-58")],
)
def test_generate_name_appends_five_safe_characters(prefix: str, base: str) -> None:
    names = {generate_name(prefix) for _ in range(50)}
    for name in names:
        assert name.startswith(base)
        suffix = name[len(base):]
        assert len(suffix) == 5
        assert set(suffix) <= ALPHABET
        assert len(name) <= 63
    assert len(names) > 1


def test_valid_meta_has_no_errors() -> None:
    meta = {"name": "disk", "labels": {"app": "web", "example.com/tier": "", "a.b_c-d": "V_1.x"},
            "annotations": {"example.com/note": "anything at all: {json}", "Plain": "x"},
            "finalizers": ["kubernetes.io/pvc-protection"]}
    assert validate_meta(meta, namespaced=True) == []


def test_missing_name_is_required() -> None:
    assert [str(e) for e in validate_meta({}, namespaced=True)] == [
        "metadata.name: Required value: name or generateName is required"]


@pytest.mark.parametrize(
    ("key", "detail"),
    [
        pytest.param("-bad", QUALIFIED_NAME_MSG, id="leading-dash"),
        pytest.param("bad-", QUALIFIED_NAME_MSG, id="trailing-dash"),
        pytest.param("has space", QUALIFIED_NAME_MSG, id="space"),
        pytest.param("Example.com/app", "prefix part " + SUBDOMAIN_MSG, id="upper-case-prefix"),
        pytest.param("example.com/", "name part must be non-empty", id="empty-name-part"),
        # IsQualifiedName: "name part " + MaxLenError(63)
        pytest.param("k" * 64, "name part must be no more than 63 characters", id="name-part-too-long"),
        # IsQualifiedName: "prefix part " + EmptyError()
        pytest.param("/app", "prefix part must be non-empty", id="empty-prefix"),
    ],
)
def test_invalid_label_key_is_reported(key: str, detail: str) -> None:
    errs = validate_meta({"name": "x", "labels": {key: "v"}}, namespaced=True)
    assert f'metadata.labels: Invalid value: "{key}": {detail}' in [str(e) for e in errs]


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        pytest.param("-v", LABEL_VALUE_MSG, id="leading-dash"),
        pytest.param("a b", LABEL_VALUE_MSG, id="space"),
        pytest.param("a/b", LABEL_VALUE_MSG, id="slash"),
        # IsValidLabelValue: MaxLenError(63) for a well-formed but long value
        pytest.param("v" * 64, "must be no more than 63 characters", id="too-long"),
    ],
)
def test_invalid_label_value_is_reported(value: str, detail: str) -> None:
    errs = validate_meta({"name": "x", "labels": {"app": value}}, namespaced=True)
    assert [str(e) for e in errs] == [f'metadata.labels: Invalid value: "{value}": {detail}']


def test_annotation_key_is_validated_case_insensitively() -> None:
    assert validate_meta({"name": "x", "annotations": {"Example.COM/Key": "v"}}, namespaced=True) == []


def test_invalid_annotation_key_is_reported_as_written() -> None:
    """ValidateAnnotations checks strings.ToLower(k) but reports field.Invalid(fldPath, k, msg)."""
    errs = validate_meta({"name": "x", "annotations": {"Bad Key": "v"}}, namespaced=True)
    assert [str(e) for e in errs] == [f'metadata.annotations: Invalid value: "Bad Key": {QUALIFIED_NAME_MSG}']


def test_annotations_over_256_kib_are_too_long() -> None:
    """v1.32 field.TooLong: "may not be more than %d bytes" (the value is omitted)."""
    big = {"name": "x", "annotations": {"a": "v" * (256 * 1024)}}
    assert [str(e) for e in validate_meta(big, namespaced=True)] == [
        "metadata.annotations: Too long: may not be more than 262144 bytes"]
    fits = {"name": "x", "annotations": {"a": "v" * (256 * 1024 - 1)}}
    assert validate_meta(fits, namespaced=True) == []


def test_owner_references_need_all_fields_and_one_controller() -> None:
    meta = {"name": "x", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "Node", "name": "b", "uid": "2", "controller": True},
        {"kind": "Pod", "name": "c"},
    ]}
    assert [str(e) for e in validate_meta(meta, namespaced=True)] == [
        "metadata.ownerReferences[2].apiVersion: Required value",
        "metadata.ownerReferences[2].uid: Required value",
        'metadata.ownerReferences: Invalid value: "": Only one reference can have Controller set to true. '
        'Found "true" in references for Pod/a and Node/b',
    ]


def test_empty_finalizer_is_invalid() -> None:
    errs = validate_meta({"name": "x", "finalizers": ["ok", ""]}, namespaced=True)
    assert [str(e) for e in errs] == ['metadata.finalizers[1]: Invalid value: "": must be a non-empty string']
