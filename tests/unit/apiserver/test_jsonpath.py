"""The JSONPath subset of CRD printer columns (k8s.io/client-go/util/jsonpath semantics)."""

from __future__ import annotations

from typing import Any

import pytest

from vdisk.apiserver.jsonpath import JSONPathError, compile_path

DV: dict[str, Any] = {
    "metadata": {"name": "dv1", "annotations": {"cdi.kubevirt.io/storage.bind.immediate": "true"}},
    "spec": {"source": {"http": {"url": "https://example.com/disk.img"}}},
    "status": {
        "phase": "Succeeded",
        "progress": "100.0%",
        "restartCount": 0,
        "conditions": [
            {"type": "Bound", "status": "True", "reason": "Bound"},
            {"type": "Ready", "status": "False", "reason": "Importing"},
            {"type": "Running", "status": "False"},
        ],
        "claims": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
    },
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(".status.phase", ["Succeeded"], id="dotted"),
        pytest.param("{.status.phase}", ["Succeeded"], id="braces"),
        pytest.param("$.status.phase", ["Succeeded"], id="dollar"),
        pytest.param("{$.status.phase}", ["Succeeded"], id="braces-and-dollar"),
        pytest.param("status.phase", ["Succeeded"], id="no-leading-dot"),
        pytest.param(".status.restartCount", [0], id="falsy-value-kept"),
        pytest.param(".status.conditions[0].type", ["Bound"], id="index"),
        pytest.param(".status.conditions[-1].type", ["Running"], id="negative-index"),
        pytest.param(".status.claims[*].name", ["a", "b", "c"], id="wildcard-index"),
        pytest.param(".status.claims[0:2].name", ["a", "b"], id="slice"),
        pytest.param(".status.conditions[?(@.type=='Ready')].status", ["False"], id="filter-single-quotes"),
        pytest.param('.status.conditions[?(@.type=="Bound")].reason', ["Bound"], id="filter-double-quotes"),
        pytest.param(".status.conditions[?(@.status!='True')].type", ["Ready", "Running"], id="filter-not-equal"),
        pytest.param(".status.conditions[?(@.reason)].type", ["Bound", "Ready"], id="filter-exists"),
        pytest.param(".metadata.annotations['cdi.kubevirt.io/storage.bind.immediate']", ["true"],
                     id="bracket-key-with-dots"),
        pytest.param('.metadata["name"]', ["dv1"], id="bracket-key-double-quotes"),
        pytest.param(".spec.source.*.url", ["https://example.com/disk.img"], id="wildcard-field"),
    ],
)
def test_jsonpath_selects_values(path: str, expected: list[Any]) -> None:
    assert compile_path(path)(DV) == expected


def test_recursive_descent_finds_names_at_every_depth() -> None:
    assert sorted(compile_path("..name")(DV)) == ["a", "b", "c", "dv1"]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(".status.missing", id="missing-key"),
        pytest.param(".nope.deeper.still", id="missing-parent"),
        pytest.param(".status.phase.deeper", id="into-a-string"),
        pytest.param(".status.conditions[7].type", id="index-out-of-range"),
        pytest.param(".status.conditions[-9].type", id="negative-index-out-of-range"),
        pytest.param(".status.conditions[?(@.type=='Nope')].status", id="filter-matches-nothing"),
        pytest.param(".metadata[0]", id="index-into-object"),
    ],
)
def test_jsonpath_without_match_gives_empty_list(path: str) -> None:
    assert compile_path(path)(DV) == []


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(".status[", id="unterminated-bracket"),
        pytest.param(".status[abc]", id="non-numeric-index"),
        pytest.param(".status.conditions[?(@.type=~'x')]", id="unsupported-filter"),
        pytest.param(".status.conditions[?(@.n==bare)]", id="bare-word-literal"),
    ],
)
def test_invalid_jsonpath_raises_jsonpath_error(path: str) -> None:
    with pytest.raises(JSONPathError):
        compile_path(path)
