"""PATCH bodies: RFC 7386 merge patch, RFC 6902 JSON patch and strategic merge patch.

Strategic merge expectations follow k8s.io/apimachinery pkg/util/strategicpatch (patch.go, patch_test.go),
with merge keys and strategies read from the upstream OpenAPI definitions vdisk ships.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vdisk.apiserver.builtin import definitions
from vdisk.apiserver.errors import APIError
from vdisk.apiserver.patch import json_patch, merge_patch, strategic_merge_patch
from vdisk.apiserver.schema import make_resolver

Obj = dict[str, Any]

POD = {"$ref": "io.k8s.api.core.v1.Pod"}
PVC = {"$ref": "io.k8s.api.core.v1.PersistentVolumeClaim"}


def smp(original: Obj, patch: Obj, schema: Obj = POD) -> Obj:
    return strategic_merge_patch(original, patch, schema, make_resolver(definitions()))


def pod(*containers: Obj, **meta: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns1", **meta},
        "spec": {"containers": list(containers)},
    }


# --- merge patch (RFC 7386) ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        # the examples of RFC 7386 appendix A
        pytest.param({"a": "b"}, {"a": "c"}, {"a": "c"}, id="replace-value"),
        pytest.param({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}, id="add-key"),
        pytest.param({"a": "b"}, {"a": None}, {}, id="null-deletes"),
        pytest.param({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}, id="null-deletes-one"),
        pytest.param({"a": ["b"]}, {"a": "c"}, {"a": "c"}, id="list-replaced-by-scalar"),
        pytest.param({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}, id="scalar-replaced-by-list"),
        pytest.param({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}, id="nested"),
        pytest.param({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}, id="lists-are-replaced"),
        pytest.param(["a", "b"], ["c", "d"], ["c", "d"], id="list-root"),
        pytest.param({"a": "b"}, ["c"], ["c"], id="list-patch-replaces-object"),
        pytest.param({"a": "foo"}, None, None, id="null-patch"),
        pytest.param({"a": "foo"}, "bar", "bar", id="string-patch"),
        pytest.param({"e": None}, {"a": 1}, {"e": None, "a": 1}, id="existing-null-kept"),
        pytest.param([1, 2], {"a": "b", "c": None}, {"a": "b"}, id="object-patch-over-list"),
        pytest.param({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}, id="nested-null-in-new-object"),
    ],
)
def test_merge_patch_follows_rfc7386(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_leaves_its_arguments_unchanged() -> None:
    target = {"a": {"b": 1, "c": 2}}
    patch = {"a": {"b": None, "d": 3}}
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)
    assert merge_patch(target, patch) == {"a": {"c": 2, "d": 3}}
    assert target == before_target and patch == before_patch


# --- JSON patch (RFC 6902) ----------------------------------------------------------------------------------

def test_json_patch_applies_operations_in_order() -> None:
    target = {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}}
    patch = [
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "replace", "path": "/spec/list/0", "value": 9},
        {"op": "add", "path": "/spec/list/-", "value": 3},
        {"op": "copy", "from": "/spec/list", "path": "/spec/copy"},
        {"op": "move", "from": "/spec/copy", "path": "/spec/moved"},
    ]
    assert json_patch(target, patch) == {"metadata": {"labels": {"b": "2"}},
                                         "spec": {"list": [9, 2, 3], "moved": [9, 2, 3]}}
    assert target == {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}}


def test_json_patch_failed_test_operation_is_422_invalid() -> None:
    with pytest.raises(APIError) as exc:
        json_patch({"spec": {"x": 1}}, [{"op": "test", "path": "/spec/x", "value": 2},
                                        {"op": "replace", "path": "/spec/x", "value": 3}])
    assert exc.value.code == 422
    assert exc.value.reason == "Invalid"


@pytest.mark.parametrize(
    "patch",
    [
        pytest.param([{"op": "remove", "path": "/spec/missing"}], id="remove-missing-key"),
        pytest.param([{"op": "replace", "path": "/spec/list/5", "value": 1}], id="index-out-of-range"),
        pytest.param([{"op": "add", "path": "spec", "value": 1}], id="pointer-without-slash"),
        pytest.param([{"op": "add", "path": "/no/such/parent", "value": 1}], id="missing-parent"),
    ],
)
def test_json_patch_bad_pointer_is_422_invalid(patch: list[Obj]) -> None:
    with pytest.raises(APIError) as exc:
        json_patch({"spec": {"list": [1]}}, patch)
    assert exc.value.code == 422


def test_json_patch_that_is_not_a_list_is_400() -> None:
    with pytest.raises(APIError) as exc:
        json_patch({"a": 1}, {"op": "add", "path": "/b", "value": 1})
    assert exc.value.code == 400


# --- strategic merge patch ----------------------------------------------------------------------------------

def test_strategic_patch_merges_maps_recursively_and_null_deletes() -> None:
    original = pod({"name": "c", "image": "i"}, labels={"a": "1", "b": "2"}, annotations={"x": "y"})
    result = smp(original, {"metadata": {"labels": {"a": None, "c": "3"}, "annotations": None}})
    assert result["metadata"] == {"name": "p", "namespace": "ns1", "labels": {"b": "2", "c": "3"}}
    assert result["spec"] == original["spec"]


def test_strategic_patch_leaves_its_arguments_unchanged() -> None:
    original = pod({"name": "a", "image": "i", "env": [{"name": "E", "value": "1"}]}, finalizers=["f1"])
    patch = {"metadata": {"finalizers": ["f2"]},
             "spec": {"containers": [{"name": "a", "env": [{"name": "E", "value": "2"}]}]}}
    before_original, before_patch = copy.deepcopy(original), copy.deepcopy(patch)
    smp(original, patch)
    assert original == before_original and patch == before_patch


def test_strategic_patch_merges_containers_by_name() -> None:
    original = pod({"name": "a", "image": "ia", "args": ["x"]}, {"name": "b", "image": "ib"})
    result = smp(original, {"spec": {"containers": [{"name": "b", "image": "ib2"}]}})
    assert result["spec"]["containers"] == [{"name": "a", "image": "ia", "args": ["x"]},
                                            {"name": "b", "image": "ib2"}]


def test_strategic_patch_merges_nested_list_inside_merged_element() -> None:
    original = pod({"name": "a", "image": "i", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]})
    result = smp(original, {"spec": {"containers": [{"name": "a", "env": [{"name": "B", "value": "3"}]}]}})
    assert result["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]


def test_strategic_patch_puts_new_container_before_existing_ones() -> None:
    """Without $setElementOrder, upstream mergeSortedSlice places items the server does not know first.

    kubectl's docs (update-api-object-kubectl-patch) show the patched-in patch-demo-ctr-2 listed first.
    """
    original = pod({"name": "a", "image": "ia"}, {"name": "b", "image": "ib"})
    result = smp(original, {"spec": {"containers": [{"name": "c", "image": "ic"}]}})
    assert [c["name"] for c in result["spec"]["containers"]] == ["c", "a", "b"]


def test_strategic_patch_delete_directive_removes_list_element() -> None:
    original = pod({"name": "a", "image": "ia"}, {"name": "b", "image": "ib"})
    result = smp(original, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}})
    assert result["spec"]["containers"] == [{"name": "b", "image": "ib"}]


def test_strategic_patch_delete_directive_for_unknown_element_changes_nothing() -> None:
    original = pod({"name": "a", "image": "ia"})
    result = smp(original, {"spec": {"containers": [{"name": "zz", "$patch": "delete"}]}})
    assert result["spec"]["containers"] == [{"name": "a", "image": "ia"}]


def test_strategic_patch_replace_directive_on_map_replaces_it() -> None:
    original = pod({"name": "a", "image": "i"}, labels={"a": "1", "b": "2"})
    result = smp(original, {"metadata": {"labels": {"$patch": "replace", "c": "3"}}})
    assert result["metadata"]["labels"] == {"c": "3"}


def test_strategic_patch_replace_directive_on_list_replaces_it() -> None:
    original = pod({"name": "a", "image": "ia"}, {"name": "b", "image": "ib"})
    result = smp(original, {"spec": {"containers": [{"name": "c", "image": "ic"}, {"$patch": "replace"}]}})
    assert result["spec"]["containers"] == [{"name": "c", "image": "ic"}]


def test_strategic_patch_merges_finalizers_as_a_set() -> None:
    original = pod({"name": "a", "image": "i"}, finalizers=["f1", "f2"])
    result = smp(original, {"metadata": {"finalizers": ["f2", "f3"]}})
    assert result["metadata"]["finalizers"] == ["f1", "f2", "f3"]


def test_strategic_patch_puts_new_finalizer_before_existing_ones() -> None:
    """Upstream mergeSlice dedups, then mergeSortedSlice puts patch-only items ahead of server-only ones."""
    original = pod({"name": "a", "image": "i"}, finalizers=["f1", "f2"])
    result = smp(original, {"metadata": {"finalizers": ["f3"]}})
    assert result["metadata"]["finalizers"] == ["f3", "f1", "f2"]


def test_strategic_patch_delete_from_primitive_list_removes_finalizers() -> None:
    original = pod({"name": "a", "image": "i"}, finalizers=["f1", "f2", "f3"])
    result = smp(original, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["f1", "f3", "nope"]}})
    assert result["metadata"]["finalizers"] == ["f2"]


def test_strategic_patch_delete_from_missing_primitive_list_adds_nothing() -> None:
    """patch_test.go: $deleteFromPrimitiveList on nonexistent primitive list should not add the list."""
    original = pod({"name": "a", "image": "i"})
    result = smp(original, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}})
    assert "finalizers" not in result["metadata"]


def test_strategic_patch_set_element_order_directive_is_not_stored() -> None:
    original = pod({"name": "a", "image": "ia"}, {"name": "b", "image": "ib"}, finalizers=["f1"])
    patch = {"metadata": {"$setElementOrder/finalizers": ["f1", "f2"], "finalizers": ["f2"]},
             "spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                      "containers": [{"name": "b", "image": "ib2"}]}}
    result = smp(original, patch)
    assert result["metadata"]["finalizers"] == ["f1", "f2"]
    assert result["spec"]["containers"] == [{"name": "a", "image": "ia"}, {"name": "b", "image": "ib2"}]
    assert not any(k.startswith("$") for k in result["metadata"])
    assert not any(k.startswith("$") for k in result["spec"])


def test_strategic_patch_retain_keys_clears_other_fields() -> None:
    original = pod({"name": "a", "image": "i"})
    original["spec"]["volumes"] = [{"name": "v", "hostPath": {"path": "/x"}}]
    patch = {"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}]}}
    result = smp(original, patch)
    assert result["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]


def test_strategic_patch_replaces_list_without_merge_strategy() -> None:
    original = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
                "spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                         "resources": {"requests": {"storage": "1Gi"}}}}
    result = smp(original, {"spec": {"accessModes": ["ReadWriteMany"],
                                     "resources": {"requests": {"storage": "2Gi"}}}}, PVC)
    assert result["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "2Gi"}}}


def test_strategic_patch_without_schema_replaces_lists() -> None:
    result = strategic_merge_patch({"a": [1, 2], "m": {"x": 1}}, {"a": [3], "m": {"y": 2}}, None,
                                   make_resolver({}))
    assert result == {"a": [3], "m": {"x": 1, "y": 2}}


def test_strategic_patch_element_without_merge_key_is_400() -> None:
    original = pod({"name": "a", "image": "i"})
    with pytest.raises(APIError) as exc:
        smp(original, {"spec": {"containers": [{"image": "no-name"}]}})
    assert exc.value.code == 400


def test_strategic_patch_that_is_not_an_object_is_400() -> None:
    with pytest.raises(APIError) as exc:
        smp(pod(), [{"op": "add"}])  # type: ignore[arg-type]
    assert exc.value.code == 400
