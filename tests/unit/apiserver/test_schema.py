"""Structural schema walk: pruning, defaulting and validation messages.

Upstream: apiextensions-apiserver pkg/apiserver/schema/pruning and defaulting, and
pkg/apiserver/validation/validation.go, which turns kube-openapi errors into field errors
(`spec.x: Invalid value: "string": spec.x in body must be of type integer: "string"`).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vdisk.apiserver.schema import Walker, WalkResult, identity_resolver, make_resolver

Obj = dict[str, Any]

SCHEMA: Obj = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "string"},
                "replicas": {"type": "integer", "default": 1, "minimum": 1, "maximum": 5},
                "mode": {"type": "string", "enum": ["Filesystem", "Block"]},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8, "minLength": 2},
                "ratio": {"type": "number"},
                "enabled": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "minItems": 1},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "containers": {
                    "type": "array",
                    "items": {"type": "object",
                              "properties": {"name": {"type": "string"},
                                             "policy": {"type": "string", "default": "Always"}}},
                },
                "options": {
                    "type": "object",
                    "properties": {"level": {"type": "integer", "default": 3}},
                },
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                          "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
            },
        },
    },
}


def walk(obj: Obj, schema: Obj = SCHEMA, **options: Any) -> WalkResult:
    return Walker(identity_resolver, **options).walk_root(obj, schema)


def cr(**spec: Any) -> Obj:
    return {"apiVersion": "x.io/v1", "kind": "Foo", "metadata": {"name": "f"}, "spec": {"size": "1Gi", **spec}}


def messages(result: WalkResult) -> list[str]:
    return [str(e) for e in result.errors]


# --- pruning ------------------------------------------------------------------------------------------------

def test_unknown_fields_are_pruned_and_reported_with_paths() -> None:
    obj = cr(foo=1, containers=[{"name": "a", "bar": 2}, {"name": "b"}])
    obj["status"] = {"x": 1}
    result = walk(obj)
    assert sorted(result.unknown) == ["spec.containers[0].bar", "spec.foo", "status"]
    assert obj == {"apiVersion": "x.io/v1", "kind": "Foo", "metadata": {"name": "f"},
                   "spec": {"size": "1Gi", "containers": [{"name": "a"}, {"name": "b"}]}}
    assert result.errors == []


def test_without_pruning_unknown_fields_are_kept() -> None:
    obj = cr(foo=1)
    result = walk(obj, prune=False)
    assert obj["spec"]["foo"] == 1
    assert result.unknown == []


def test_preserve_unknown_fields_keeps_them_but_prunes_inside_specified_properties() -> None:
    obj = cr(extra={"anything": {"goes": [1]}, "known": {"a": "x", "b": "pruned"}})
    result = walk(obj)
    assert result.unknown == ["spec.extra.known.b"]
    assert obj["spec"]["extra"] == {"anything": {"goes": [1]}, "known": {"a": "x"}}


def test_additional_properties_keeps_map_keys() -> None:
    obj = cr(labels={"a": "1", "b": "2"})
    assert walk(obj).unknown == []
    assert obj["spec"]["labels"] == {"a": "1", "b": "2"}


def test_embedded_resource_keeps_type_and_object_meta() -> None:
    obj = cr(template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "1", "y": 2}})
    assert walk(obj).unknown == ["spec.template.spec.y"]
    assert obj["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                       "spec": {"x": "1"}}


def test_metadata_schema_prunes_unknown_metadata_fields() -> None:
    meta_schema = {"type": "object", "properties": {"name": {"type": "string"},
                                                    "labels": {"type": "object",
                                                               "additionalProperties": {"type": "string"}}}}
    obj = cr()
    obj["metadata"] = {"name": "f", "labels": {"a": "b"}, "bogus": 1}
    result = Walker(identity_resolver, metadata_schema=meta_schema).walk_root(obj, SCHEMA)
    assert result.unknown == ["metadata.bogus"]
    assert obj["metadata"] == {"name": "f", "labels": {"a": "b"}}


@pytest.mark.parametrize(
    ("field", "kept"),
    [pytest.param("replicas", False, id="non-nullable-pruned"), pytest.param("note", True, id="nullable-kept")],
)
def test_null_values_are_dropped_unless_nullable(field: str, kept: bool) -> None:
    obj = cr(**{field: None})
    result = walk(obj)
    assert (field in obj["spec"]) is kept
    assert result.errors == [] and result.unknown == []


# --- defaulting ---------------------------------------------------------------------------------------------

def test_defaults_fill_missing_fields_of_present_objects() -> None:
    obj = cr(containers=[{"name": "a"}, {"name": "b", "policy": "Never"}], options={})
    walk(obj, defaults=True)
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["containers"] == [{"name": "a", "policy": "Always"}, {"name": "b", "policy": "Never"}]
    assert obj["spec"]["options"] == {"level": 3}


def test_defaults_do_not_create_absent_parents_or_override_values() -> None:
    obj = cr(replicas=4)
    walk(obj, defaults=True)
    assert obj["spec"]["replicas"] == 4
    assert "options" not in obj["spec"]


def test_defaults_are_not_applied_unless_asked() -> None:
    obj = cr()
    walk(obj)
    assert "replicas" not in obj["spec"]


def test_default_values_are_copied_not_shared() -> None:
    schema = {"type": "object", "properties": {"list": {"type": "array", "items": {"type": "string"},
                                                        "default": ["a"]}}}
    first, second = {}, {}  # type: ignore[var-annotated]
    walk(first, schema, defaults=True)
    first["list"].append("b")
    walk(second, schema, defaults=True)
    assert second == {"list": ["a"]}


def test_defaults_follow_refs_through_the_resolver() -> None:
    defs = {"Opts": {"type": "object", "properties": {"level": {"type": "integer", "default": 7}}}}
    schema = {"type": "object", "properties": {"opts": {"$ref": "#/components/schemas/Opts"}}}
    obj: Obj = {"opts": {}}
    Walker(make_resolver(defs), defaults=True).walk_root(obj, schema)
    assert obj == {"opts": {"level": 7}}


# --- validation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("replicas", "abc", 'spec.replicas: Invalid value: "string": '
                     'spec.replicas in body must be of type integer: "string"', id="integer-given-string"),
        pytest.param("replicas", 1.5, 'spec.replicas: Invalid value: "number": '
                     'spec.replicas in body must be of type integer: "number"', id="integer-given-fraction"),
        pytest.param("size", 5, 'spec.size: Invalid value: "integer": '
                     'spec.size in body must be of type string: "integer"', id="string-given-integer"),
        pytest.param("enabled", "yes", 'spec.enabled: Invalid value: "string": '
                     'spec.enabled in body must be of type boolean: "string"', id="boolean-given-string"),
        pytest.param("options", [1], 'spec.options: Invalid value: "array": '
                     'spec.options in body must be of type object: "array"', id="object-given-array"),
        pytest.param("tags", {"a": 1}, 'spec.tags: Invalid value: "object": '
                     'spec.tags in body must be of type array: "object"', id="array-given-object"),
    ],
)
def test_type_mismatch_reports_the_json_type_as_upstream(field: str, value: Any, message: str) -> None:
    """kube-openapi's InvalidType carries the JSON type name as the bad value, not the value itself."""
    result = walk(cr(**{field: value}))
    assert messages(result) == [message]
    assert result.errors[0].field == f"spec.{field}"


def test_type_mismatch_cause_reason_is_field_value_type_invalid() -> None:
    """validation.go maps InvalidTypeCode to field.TypeInvalid (reason FieldValueTypeInvalid)."""
    result = walk(cr(replicas="abc"))
    assert [e.type for e in result.errors] == ["FieldValueTypeInvalid"]


def test_whole_float_is_accepted_as_integer_and_stored_as_int() -> None:
    obj = cr(replicas=2.0)
    assert walk(obj).errors == []
    assert obj["spec"]["replicas"] == 2 and isinstance(obj["spec"]["replicas"], int)


def test_integer_is_accepted_as_number() -> None:
    assert walk(cr(ratio=3)).errors == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [pytest.param(8080, True, id="int"), pytest.param("http", True, id="string"),
     pytest.param(True, False, id="bool"), pytest.param(1.5, False, id="float")],
)
def test_int_or_string_accepts_only_int_or_string(value: Any, ok: bool) -> None:
    result = walk(cr(port=value))
    assert (result.errors == []) is ok


def test_enum_violation_is_unsupported_value() -> None:
    result = walk(cr(mode="Raw"))
    assert messages(result) == ['spec.mode: Unsupported value: "Raw": supported values: "Filesystem", "Block"']
    assert result.errors[0].type == "FieldValueNotSupported"


def test_pattern_violation_is_invalid_value() -> None:
    result = walk(cr(name="ABC"))
    assert messages(result) == ["spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"]


def test_string_length_limits() -> None:
    assert messages(walk(cr(name="abcdefghi"))) == ["spec.name: Too long: may not be more than 8 bytes"]
    assert messages(walk(cr(name="a"))) == [
        'spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long']


def test_numeric_limits() -> None:
    assert messages(walk(cr(replicas=0))) == [
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"]
    assert messages(walk(cr(replicas=6))) == [
        "spec.replicas: Invalid value: 6: spec.replicas in body should be less than or equal to 5"]


def test_too_many_items_reports_count_and_limit() -> None:
    """field.TooMany(path, actual, max) prints the actual count: `Too many: 3: must have at most 2 items`."""
    assert messages(walk(cr(tags=["a", "b", "c"]))) == ["spec.tags: Too many: 3: must have at most 2 items"]


def test_items_are_validated_with_their_index_in_the_path() -> None:
    result = walk(cr(tags=["a", 7]))
    assert [e.field for e in result.errors] == ["spec.tags[1]"]


def test_missing_required_field_is_required_value() -> None:
    obj = cr()
    del obj["spec"]["size"]
    result = walk(obj)
    assert messages(result) == ["spec.size: Required value"]
    assert result.errors[0].type == "FieldValueRequired"


def test_validation_can_be_turned_off() -> None:
    obj = cr(mode="Raw", replicas="x")
    del obj["spec"]["size"]
    assert walk(obj, validate=False).errors == []


def test_valid_object_is_left_unchanged() -> None:
    obj = cr(replicas=2, mode="Block", name="disk", tags=["a"], labels={"k": "v"}, port=80,
             containers=[{"name": "c", "policy": "Always"}])
    before = copy.deepcopy(obj)
    result = walk(obj)
    assert result.errors == [] and result.unknown == []
    assert obj == before
