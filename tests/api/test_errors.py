"""Bad input gets an upstream-shaped Status with the right code and changes nothing."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import VdiskProcess

DV = {
    "apiVersion": "cdi.kubevirt.io/v1beta1",
    "kind": "DataVolume",
    "metadata": {"name": "dv1"},
    "spec": {"source": {"blank": {}},
             "pvc": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
}


def dvs(ns: str) -> str:
    return f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes"


def assert_status(r: httpx.Response, code: int, reason: str) -> dict:
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure" and body["code"] == code and body["reason"] == reason
    assert body["message"]
    return body


@pytest.fixture
def http(vdisk: VdiskProcess) -> httpx.Client:
    with vdisk.http() as c:
        yield c


def revision(http: httpx.Client, ns: str) -> list[tuple[str, str]]:
    """What is stored in the namespace: (name, resourceVersion) of every DataVolume."""
    items = http.get(dvs(ns)).json()["items"]
    return [(o["metadata"]["name"], o["metadata"]["resourceVersion"]) for o in items]


def test_malformed_json_is_400_and_stores_nothing(http: httpx.Client, namespace: str) -> None:
    before = revision(http, namespace)
    r = http.post(dvs(namespace), content=b'{"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": ',
                  headers={"Content-Type": "application/json"})
    assert_status(r, 400, "BadRequest")
    assert revision(http, namespace) == before


def test_unknown_field_strict_is_400_and_warn_sets_the_warning_header(http: httpx.Client, namespace: str) -> None:
    body = {**DV, "spec": {**DV["spec"], "foo": 1}, "bar": True}
    strict = http.post(dvs(namespace) + "?fieldValidation=Strict", json=body)
    msg = assert_status(strict, 400, "BadRequest")["message"]
    assert msg == ('DataVolume in version "v1beta1" cannot be handled as a DataVolume: strict decoding error: '
                   'unknown field "spec.foo", unknown field "bar"')
    assert http.get(dvs(namespace) + "/dv1").status_code == 404
    warn = http.post(dvs(namespace) + "?fieldValidation=Warn", json=body)
    assert warn.status_code == 201
    warnings = warn.headers.get_list("Warning")
    assert '299 - "unknown field \\"spec.foo\\""' in warnings
    assert '299 - "unknown field \\"bar\\""' in warnings
    assert "foo" not in warn.json()["spec"] and "bar" not in warn.json()  # pruned
    ignore = http.post(dvs(namespace) + "?fieldValidation=Ignore", json={**body, "metadata": {"name": "dv2"}})
    assert ignore.status_code == 201 and not ignore.headers.get_list("Warning")


def test_invalid_values_are_422_with_causes_naming_fields(http: httpx.Client, namespace: str) -> None:
    before = revision(http, namespace)
    r = http.post(dvs(namespace), json={**DV, "spec": {"pvc": DV["spec"]["pvc"]}})
    body = assert_status(r, 422, "Invalid")
    assert body["details"]["causes"] == [{"reason": "FieldValueInvalid",
                                          "message": "Data volume should have either Source or SourceRef, or be externally populated",
                                          "field": "spec.source"}]
    assert body["details"]["kind"] == "DataVolume" and body["details"]["name"] == "dv1"
    r = http.post(dvs(namespace), json={**DV, "spec": {**DV["spec"], "source": {"blank": {}, "upload": {}}}})
    assert assert_status(r, 422, "Invalid")["details"]["causes"][0]["message"] == "Multiple Data volume sources"
    r = http.post(dvs(namespace), json={**DV, "spec": {**DV["spec"], "pvc": {
        "accessModes": ["ReadWriteOnce", "ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}})
    assert assert_status(r, 422, "Invalid")["details"]["causes"][0]["field"] == "spec.pvc.accessModes"
    r = http.post(dvs(namespace), json={**DV, "spec": {**DV["spec"], "pvc": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "512Ki"}}}}})
    assert "at least 1MiB" in assert_status(r, 422, "Invalid")["message"]
    r = http.post(dvs(namespace), json={**DV, "metadata": {"name": "Bad_Name"}})
    body = assert_status(r, 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "RFC 1123" in body["message"]
    r = http.post(dvs(namespace), json={**DV, "spec": {**DV["spec"], "preallocation": "yes"}})
    body = assert_status(r, 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "spec.preallocation"
    assert "must be of type boolean" in body["message"]
    assert revision(http, namespace) == before


def test_spec_of_a_datavolume_is_immutable(http: httpx.Client, namespace: str) -> None:
    assert http.post(dvs(namespace), json=DV).status_code == 201
    r = http.patch(dvs(namespace) + "/dv1", content=json.dumps({"spec": {"preallocation": True}}),
                   headers={"Content-Type": "application/merge-patch+json"})
    body = assert_status(r, 422, "Invalid")
    assert body["details"]["causes"][0]["message"] == "Cannot update DataVolume Spec"
    assert "preallocation" not in http.get(dvs(namespace) + "/dv1").json()["spec"]


def test_stale_resource_version_is_409_conflict(http: httpx.Client, namespace: str) -> None:
    created = http.post(dvs(namespace), json=DV).json()
    stale = dict(created)
    http.patch(dvs(namespace) + "/dv1", content=b'{"metadata":{"labels":{"a":"b"}}}',
               headers={"Content-Type": "application/merge-patch+json"})
    stale["metadata"] = {**created["metadata"], "labels": {"x": "y"}}
    r = http.put(dvs(namespace) + "/dv1", json=stale)
    body = assert_status(r, 409, "Conflict")
    assert body["message"] == ('Operation cannot be fulfilled on datavolumes.cdi.kubevirt.io "dv1": the object has '
                               'been modified; please apply your changes to the latest version and try again')
    assert http.get(dvs(namespace) + "/dv1").json()["metadata"]["labels"] == {"a": "b"}
    # a custom resource update must carry a resourceVersion
    no_rv = {**created, "metadata": {"name": "dv1"}}
    assert_status(http.put(dvs(namespace) + "/dv1", json=no_rv), 422, "Invalid")


def test_already_exists_and_not_found(http: httpx.Client, namespace: str) -> None:
    assert http.post(dvs(namespace), json=DV).status_code == 201
    body = assert_status(http.post(dvs(namespace), json=DV), 409, "AlreadyExists")
    assert body["message"] == 'datavolumes.cdi.kubevirt.io "dv1" already exists'
    body = assert_status(http.get(dvs(namespace) + "/nothere"), 404, "NotFound")
    assert body["message"] == 'datavolumes.cdi.kubevirt.io "nothere" not found'
    assert body["details"] == {"name": "nothere", "group": "cdi.kubevirt.io", "kind": "datavolumes"}


def test_unknown_kind_or_path_is_404_status(http: httpx.Client, namespace: str) -> None:
    body = assert_status(http.get(f"/apis/example.com/v1/namespaces/{namespace}/widgets"), 404, "NotFound")
    assert body["message"] == "the server could not find the requested resource"
    assert_status(http.get("/apis/cdi.kubevirt.io/v9/datavolumes"), 404, "NotFound")
    assert_status(http.get("/api/v1/namespaces/nope/persistentvolumeclaims/x/nosuchsub"), 404, "NotFound")
    assert_status(http.post(f"/api/v1/namespaces/missing-ns-{namespace}/configmaps",
                            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
                  404, "NotFound")


def test_missing_or_wrong_token_is_401(vdisk: VdiskProcess, namespace: str) -> None:
    for token in ("", "wrong-token"):
        with vdisk.http(token=token) as c:
            r = c.get(dvs(namespace))
            assert r.status_code == 401
            assert r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
            assert c.post(dvs(namespace), json=DV).status_code == 401
    with vdisk.http() as c:
        assert c.get(dvs(namespace) + "/dv1").status_code == 404
    with vdisk.http(token="") as c:
        assert c.get("/healthz").text == "ok"
        assert c.get("/version").json()["minor"] == "32"


def test_body_over_3mib_is_413(http: httpx.Client, namespace: str) -> None:
    big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"x": "a" * (3 * 1024 * 1024)}}
    r = http.post(f"/api/v1/namespaces/{namespace}/configmaps", json=big)
    body = assert_status(r, 413, "RequestEntityTooLarge")
    assert body["message"] == "Request entity too large: limit is 3145728"
    assert http.get(f"/api/v1/namespaces/{namespace}/configmaps/big").status_code == 404


def test_strategic_merge_patch_on_a_custom_resource_is_415(http: httpx.Client, namespace: str) -> None:
    http.post(dvs(namespace), json=DV)
    r = http.patch(dvs(namespace) + "/dv1", content=b'{"metadata":{"labels":{"a":"b"}}}',
                   headers={"Content-Type": "application/strategic-merge-patch+json"})
    body = assert_status(r, 415, "UnsupportedMediaType")
    assert body["message"] == ("the body of the request was in an unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, "
                               "application/apply-patch+yaml")


def test_pvc_never_shrinks(http: httpx.Client, namespace: str) -> None:
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "p"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}},
                    "storageClassName": ""}}
    assert http.post(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", json=pvc).status_code == 201
    r = http.patch(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/p",
                   content=b'{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}',
                   headers={"Content-Type": "application/strategic-merge-patch+json"})
    body = assert_status(r, 422, "Invalid")
    fields = {c["field"] for c in body["details"]["causes"]}
    assert "spec.resources.requests.storage" in fields
    assert "field can not be less than previous value" in body["message"]


def test_storage_class_parameters_are_immutable(http: httpx.Client) -> None:
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "sc-immutable-test"},
          "provisioner": "kubevirt.io.hostpath-provisioner", "parameters": {"storagePool": "a"}}
    http.delete("/apis/storage.k8s.io/v1/storageclasses/sc-immutable-test")
    assert http.post("/apis/storage.k8s.io/v1/storageclasses", json=sc).status_code == 201
    try:
        r = http.patch("/apis/storage.k8s.io/v1/storageclasses/sc-immutable-test",
                       content=b'{"parameters":{"storagePool":"b"}}',
                       headers={"Content-Type": "application/merge-patch+json"})
        body = assert_status(r, 422, "Invalid")
        assert body["details"]["causes"][0]["field"] == "parameters"
        assert "updates to parameters are forbidden" in body["message"]
    finally:
        http.delete("/apis/storage.k8s.io/v1/storageclasses/sc-immutable-test")


def test_second_hostpathprovisioner_is_refused(http: httpx.Client) -> None:
    base = "/apis/hostpathprovisioner.kubevirt.io/v1beta1/hostpathprovisioners"
    hpp = {"apiVersion": "hostpathprovisioner.kubevirt.io/v1beta1", "kind": "HostPathProvisioner",
           "metadata": {"name": "hpp-a"}, "spec": {"storagePools": [{"name": "p", "path": "/var/p"}]}}
    existing = [o["metadata"]["name"] for o in http.get(base).json()["items"]]
    for name in existing:
        http.delete(f"{base}/{name}")
    try:
        assert http.post(base, json=hpp).status_code == 201
        r = http.post(base, json={**hpp, "metadata": {"name": "hpp-b"}})
        assert "there should be a single hostpath provisioner" in assert_status(r, 422, "Invalid")["message"]
        dup = {**hpp, "metadata": {"name": "hpp-c"},
               "spec": {"storagePools": [{"name": "p", "path": "/a"}, {"name": "p", "path": "/a"}]}}
        http.delete(f"{base}/hpp-a")
        msg = assert_status(http.post(base, json=dup), 422, "Invalid")["message"]
        assert "cannot have duplicate names" in msg and "cannot have duplicate paths" in msg
    finally:
        for name in ("hpp-a", "hpp-b", "hpp-c"):
            http.delete(f"{base}/{name}")


def test_server_survives_garbage_and_keeps_serving(http: httpx.Client, namespace: str) -> None:
    for payload, ctype in ((b"\x00\x01\x02", "application/json"), (b"[]", "application/json"),
                           (b"null", "application/json"), (b"k8s\x00\xff\xff", "application/vnd.kubernetes.protobuf"),
                           (b"{{{", "application/yaml")):
        r = http.post(dvs(namespace), content=payload, headers={"Content-Type": ctype})
        assert 400 <= r.status_code < 500, (payload, r.status_code, r.text)
        assert r.json()["kind"] == "Status"
    r = http.patch(dvs(namespace) + "/dv1", content=b"[]", headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 404
    assert http.get("/readyz").status_code == 200
