"""Label and field selectors, checked against k8s.io/apimachinery pkg/labels and pkg/fields."""

from __future__ import annotations

from typing import Any

import pytest

from vdisk.apiserver.errors import APIError
from vdisk.apiserver.selectors import (
    exact_name,
    field_predicate,
    label_predicate,
    match_label_selector_obj,
    parse_label_selector,
)

Obj = dict[str, Any]


def labelled(labels: dict[str, str] | None) -> Obj:
    meta: Obj = {"name": "o"}
    if labels is not None:
        meta["labels"] = labels
    return {"metadata": meta}


def selects(selector: str, labels: dict[str, str] | None) -> bool:
    pred = label_predicate(selector)
    assert pred is not None
    return pred(labelled(labels))


# --- label selectors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param("app=web", {"app": "web"}, True, id="equals-same-value"),
        pytest.param("app=web", {"app": "db"}, False, id="equals-other-value"),
        pytest.param("app=web", None, False, id="equals-label-missing"),
        pytest.param("app==web", {"app": "web"}, True, id="double-equals"),
        pytest.param("app!=web", {"app": "db"}, True, id="not-equals-other-value"),
        pytest.param("app!=web", {}, True, id="not-equals-label-missing"),
        pytest.param("app!=web", {"app": "web"}, False, id="not-equals-same-value"),
        pytest.param("tier in (a,b)", {"tier": "b"}, True, id="in-member"),
        pytest.param("tier in (a,b)", {"tier": "c"}, False, id="in-non-member"),
        pytest.param("tier in (a,b)", {}, False, id="in-label-missing"),
        pytest.param("tier notin (a,b)", {"tier": "a"}, False, id="notin-member"),
        pytest.param("tier notin (a,b)", {"tier": "c"}, True, id="notin-non-member"),
        pytest.param("tier notin (a,b)", {}, True, id="notin-label-missing"),
        pytest.param("app", {"app": ""}, True, id="exists-present"),
        pytest.param("app", {"other": "x"}, False, id="exists-missing"),
        pytest.param("!app", {"other": "x"}, True, id="does-not-exist-missing"),
        pytest.param("!app", {"app": "web"}, False, id="does-not-exist-present"),
        pytest.param("n>3", {"n": "4"}, True, id="gt-greater"),
        pytest.param("n>3", {"n": "3"}, False, id="gt-equal"),
        pytest.param("n>3", {"n": "four"}, False, id="gt-non-integer-label"),
        pytest.param("n>3", {}, False, id="gt-label-missing"),
        pytest.param("n<3", {"n": "-1"}, True, id="lt-smaller"),
        pytest.param("n<3", {"n": "3"}, False, id="lt-equal"),
        pytest.param("x=", {"x": ""}, True, id="empty-value-matches-empty-label"),
        pytest.param("x=", {"x": "a"}, False, id="empty-value-other-label"),
        pytest.param("x=", {}, False, id="empty-value-label-missing"),
        pytest.param("app=web,tier in (a)", {"app": "web", "tier": "a"}, True, id="and-all-hold"),
        pytest.param("app=web,tier in (a)", {"app": "web", "tier": "b"}, False, id="and-one-fails"),
        pytest.param(" app = web , tier notin ( a , b ) ", {"app": "web", "tier": "c"}, True, id="whitespace"),
        pytest.param("example.com/role=db", {"example.com/role": "db"}, True, id="prefixed-key"),
    ],
)
def test_label_selector_matches_as_upstream(selector: str, labels: dict[str, str] | None, expected: bool) -> None:
    assert selects(selector, labels) is expected


@pytest.mark.parametrize("selector", ["", "   ", None], ids=["empty", "blank", "none"])
def test_empty_label_selector_gives_no_predicate(selector: str | None) -> None:
    assert label_predicate(selector) is None


def test_label_selector_parses_into_requirements_in_order() -> None:
    reqs = parse_label_selector("a=1,b!=2,c in (x,y),d notin (z),e,!f,g>5,h<6")
    assert [(r.key, r.op, r.values) for r in reqs] == [
        ("a", "=", ("1",)),
        ("b", "!=", ("2",)),
        ("c", "in", ("x", "y")),
        ("d", "notin", ("z",)),
        ("e", "exists", ()),
        ("f", "!", ()),
        ("g", "gt", ("5",)),
        ("h", "lt", ("6",)),
    ]


@pytest.mark.parametrize(
    "selector",
    [
        # the bad strings of upstream's TestSelectorParse
        pytest.param("x=a||y=b", id="double-pipe"),
        pytest.param("x==a==b", id="chained-operators"),
        pytest.param("!x=a", id="not-with-value"),
        pytest.param("x<a", id="lt-non-integer"),
        # more syntax errors
        pytest.param("x>1.5", id="gt-non-integer"),
        pytest.param("a in b", id="in-without-parenthesis"),
        pytest.param("a in (b", id="in-unclosed"),
        pytest.param("a=b c", id="missing-comma"),
        pytest.param("-bad=x", id="key-starts-with-dash"),
        pytest.param("app=-web", id="value-starts-with-dash"),
        pytest.param("app=" + "v" * 64, id="value-too-long"),
        pytest.param("Bad_Prefix/app=x", id="prefix-not-dns-subdomain"),
        # upstream: IsQualifiedName limits the name part to 63 characters
        pytest.param("k" * 64 + "=x", id="key-name-part-too-long"),
        # upstream Parser.parse: "found '', expected: identifier after ','"
        pytest.param("a=b,", id="trailing-comma"),
        # upstream parseIdentifiersList: "found 'c', expected: ',' or ')'"
        pytest.param("a in (b c)", id="in-values-without-comma"),
    ],
)
def test_invalid_label_selector_is_400_bad_request(selector: str) -> None:
    with pytest.raises(APIError) as exc:
        parse_label_selector(selector)
    assert exc.value.code == 400
    assert exc.value.reason == "BadRequest"
    assert exc.value.message.startswith("unable to parse requirement: ")


# --- metav1.LabelSelector objects ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param({}, {"a": "1"}, True, id="empty-selects-everything"),
        pytest.param({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True, id="match-labels-subset"),
        pytest.param({"matchLabels": {"a": "1"}}, {"a": "2"}, False, id="match-labels-other-value"),
        pytest.param({"matchLabels": {"a": "1"}}, {}, False, id="match-labels-missing"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
                     {"a": "2"}, True, id="in-member"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]},
                     {}, False, id="in-missing"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
                     {}, True, id="notin-missing"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
                     {"a": "1"}, False, id="notin-member"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True, id="exists"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False, id="exists-missing"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True,
                     id="does-not-exist"),
        pytest.param({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False,
                     id="does-not-exist-present"),
        pytest.param({"matchLabels": {"a": "1"},
                      "matchExpressions": [{"key": "b", "operator": "In", "values": ["2"]}]},
                     {"a": "1", "b": "3"}, False, id="labels-and-expressions-are-anded"),
    ],
)
def test_label_selector_object_matches_as_upstream(selector: Obj, labels: dict[str, str], expected: bool) -> None:
    assert match_label_selector_obj(selector, labels) is expected


# --- field selectors ----------------------------------------------------------------------------------------

PODS = ("", "pods")
EVENTS = ("", "events")
DATAVOLUMES = ("cdi.kubevirt.io", "datavolumes")


def named(name: str, namespace: str = "ns1", **extra: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": namespace}, **extra}


@pytest.mark.parametrize(
    ("selector", "obj", "expected"),
    [
        pytest.param("metadata.name=a", named("a"), True, id="name-equals"),
        pytest.param("metadata.name==a", named("b"), False, id="name-double-equals-other"),
        pytest.param("metadata.name!=a", named("b"), True, id="name-not-equals"),
        pytest.param("metadata.namespace=ns1", named("a"), True, id="namespace-equals"),
        pytest.param("metadata.namespace=ns2", named("a"), False, id="namespace-other"),
        pytest.param("metadata.name=a,metadata.namespace=ns1", named("a"), True, id="and-all-hold"),
        pytest.param("metadata.name=a,metadata.namespace=ns2", named("a"), False, id="and-one-fails"),
        pytest.param("metadata.name=a\\,b", named("a,b"), True, id="escaped-comma"),
        pytest.param("metadata.name=a\\=b", named("a=b"), True, id="escaped-equals"),
        pytest.param("metadata.name=a\\\\b", named("a\\b"), True, id="escaped-backslash"),
    ],
)
def test_field_selector_on_metadata_matches(selector: str, obj: Obj, expected: bool) -> None:
    pred = field_predicate(selector, DATAVOLUMES)
    assert pred is not None
    assert pred(obj) is expected


EVENT = {
    "metadata": {"name": "p1.17a", "namespace": "ns1"},
    "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "ns1", "uid": "u1",
                       "fieldPath": "spec.containers{c}"},
    "reason": "Pulled",
    "type": "Normal",
    "source": {"component": "kubelet"},
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("involvedObject.kind=Pod,involvedObject.name=p1", True, id="kind-and-name"),
        pytest.param("involvedObject.kind=PersistentVolumeClaim", False, id="other-kind"),
        pytest.param("involvedObject.uid=u1", True, id="uid"),
        pytest.param("involvedObject.namespace=ns1", True, id="involved-namespace"),
        pytest.param("involvedObject.fieldPath=spec.containers{c}", True, id="field-path"),
        pytest.param("involvedObject.apiVersion=", True, id="missing-field-is-empty-string"),
        pytest.param("reason=Pulled,type!=Warning", True, id="reason-and-type"),
        pytest.param("source=kubelet", True, id="source-component"),
        pytest.param("metadata.name=p1.17a", True, id="metadata-name"),
    ],
)
def test_field_selector_on_event_fields_matches(selector: str, expected: bool) -> None:
    pred = field_predicate(selector, EVENTS)
    assert pred is not None
    assert pred(EVENT) is expected


def test_field_selector_on_pod_node_name_matches() -> None:
    pred = field_predicate("spec.nodeName=node1,status.phase=Running", PODS)
    assert pred is not None
    assert pred(named("p", spec={"nodeName": "node1"}, status={"phase": "Running"}))
    assert not pred(named("p", spec={"nodeName": "node2"}, status={"phase": "Running"}))


def test_field_selector_uses_crd_selectable_fields() -> None:
    pred = field_predicate("spec.phase=Succeeded", DATAVOLUMES, {"spec.phase": "status.phase"})
    assert pred is not None
    assert pred(named("dv", status={"phase": "Succeeded"}))
    assert not pred(named("dv", status={"phase": "Pending"}))


def test_unknown_field_label_on_event_is_400_field_label_not_supported() -> None:
    with pytest.raises(APIError) as exc:
        field_predicate("spec.foo=x", EVENTS)
    assert exc.value.code == 400
    assert exc.value.message == "field label not supported: spec.foo"


def test_unknown_field_label_on_custom_resource_is_400_naming_metadata_fields() -> None:
    with pytest.raises(APIError) as exc:
        field_predicate("spec.foo=x", DATAVOLUMES)
    assert exc.value.code == 400
    assert exc.value.message == ('"spec.foo" is not a known field selector: '
                                 'only "metadata.name", "metadata.namespace"')


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param("metadata.name", id="no-operator"),
        # upstream fields.UnescapeValue: unescaped ',' and '=' are not allowed in values
        pytest.param("metadata.name=a=b", id="unescaped-equals-in-value"),
        # upstream fields.UnescapeValue: only \\ \, \= are escape sequences
        pytest.param("metadata.name=a\\b", id="invalid-escape-sequence"),
        pytest.param("metadata.name=a\\", id="trailing-backslash"),
    ],
)
def test_invalid_field_selector_is_400_bad_request(selector: str) -> None:
    with pytest.raises(APIError) as exc:
        field_predicate(selector, PODS)
    assert exc.value.code == 400


@pytest.mark.parametrize("selector", ["", " ", None], ids=["empty", "blank", "none"])
def test_empty_field_selector_gives_no_predicate(selector: str | None) -> None:
    assert field_predicate(selector, PODS) is None


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("metadata.name=a", "a", id="single-equals"),
        pytest.param("metadata.name==a", "a", id="double-equals"),
        pytest.param("metadata.name!=a", None, id="not-equals"),
        pytest.param("metadata.name=a,metadata.namespace=b", None, id="two-terms"),
        pytest.param("metadata.name=a\\,b", None, id="escaped"),
        pytest.param(None, None, id="none"),
    ],
)
def test_exact_name_only_for_a_single_name_equality(selector: str | None, expected: str | None) -> None:
    assert exact_name(selector) == expected
