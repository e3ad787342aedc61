"""kubectl's everyday verbs against the embedded API server, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml

from tests.conftest import EXAMPLES, Kubectl, VdiskProcess, wait_for

DV = {
    "apiVersion": "cdi.kubevirt.io/v1beta1",
    "kind": "DataVolume",
    "metadata": {"name": "dv1", "labels": {"app": "test"}},
    "spec": {"source": {"blank": {}},
             "pvc": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
}
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"a": "1", "b": "2"}}


def test_get_yaml_round_trips_the_created_object(kubectl: Kubectl) -> None:
    kubectl.create({**DV, "status": {"phase": "Bogus", "progress": "12%"}})
    obj = yaml.safe_load(kubectl("get", "dv", "dv1", "-o", "yaml"))
    assert obj["apiVersion"] == "cdi.kubevirt.io/v1beta1" and obj["kind"] == "DataVolume"
    assert obj["spec"] == DV["spec"]
    assert obj["metadata"]["namespace"] == kubectl.namespace
    assert obj["metadata"]["generation"] == 1
    # the status subresource owns status: create drops what the client sent (controllers fill it later)
    assert obj.get("status", {}).get("phase") != "Bogus"
    assert obj.get("status", {}).get("progress") != "12%"


def test_apply_twice_says_unchanged_and_a_change_configures(kubectl: Kubectl) -> None:
    assert "cm1 created" in kubectl.apply(CM)
    assert "cm1 unchanged" in kubectl.apply(CM)
    changed = {**CM, "data": {"a": "1", "c": "3"}}
    assert "cm1 configured" in kubectl.apply(changed)
    assert kubectl.json("get", "cm", "cm1")["data"] == {"a": "1", "c": "3"}  # b removed by the 3-way merge
    assert "dv1 created" in kubectl.apply(DV)
    assert "dv1 unchanged" in kubectl.apply(DV)


def test_edit_with_an_editor_script_patches_the_object(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl.create(CM)
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/a: \"1\"/a: \"42\"/' \"$1\"\n")
    editor.chmod(0o755)
    out = kubectl("edit", "cm", "cm1", env={"KUBE_EDITOR": str(editor)})
    assert "cm1 edited" in out
    assert kubectl.json("get", "cm", "cm1")["data"]["a"] == "42"


def test_patch_types(kubectl: Kubectl) -> None:
    kubectl.create(DV)
    kubectl.create(CM)
    kubectl("patch", "dv", "dv1", "--type", "merge", "-p", '{"metadata":{"labels":{"tier":"gold"}}}')
    assert kubectl.json("get", "dv", "dv1")["metadata"]["labels"]["tier"] == "gold"
    kubectl("patch", "dv", "dv1", "--type", "json", "-p",
            '[{"op":"test","path":"/metadata/labels/tier","value":"gold"},'
            '{"op":"replace","path":"/metadata/labels/tier","value":"silver"}]')
    assert kubectl.json("get", "dv", "dv1")["metadata"]["labels"]["tier"] == "silver"
    failed = kubectl.run("patch", "dv", "dv1", "--type", "json", "-p",
                         '[{"op":"test","path":"/metadata/labels/tier","value":"gold"}]', check=False)
    assert failed.returncode != 0 and "test" in failed.stderr.lower()
    # strategic merge patch: built-in kinds merge, custom resources answer 415 as upstream
    kubectl("patch", "cm", "cm1", "-p", '{"data":{"c":"3"}}')
    assert kubectl.json("get", "cm", "cm1")["data"] == {"a": "1", "b": "2", "c": "3"}
    smp = kubectl.run("patch", "dv", "dv1", "-p", '{"metadata":{"labels":{"x":"y"}}}', check=False)
    assert smp.returncode != 0
    assert "application/strategic-merge-patch+json is not supported by cdi.kubevirt.io/v1beta1, Kind=DataVolume" \
        in smp.stderr
    assert "accepted media types include: application/json-patch+json, application/merge-patch+json" in smp.stderr


def test_strategic_merge_patch_merges_lists_by_key(kubectl: Kubectl) -> None:
    """Pod containers merge by name, finalizers as a set; `$patch: delete` removes an element."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "finalizers": ["a.io/x"]},
           "spec": {"containers": [{"name": "c1", "image": "busybox", "env": [{"name": "A", "value": "1"}]},
                                   {"name": "c2", "image": "busybox"}]}}
    kubectl.create(pod)
    kubectl("patch", "pod", "p1", "-p", json.dumps({
        "metadata": {"finalizers": ["b.io/y"]},
        "spec": {"containers": [{"name": "c1", "env": [{"name": "B", "value": "2"}]},
                                {"name": "c2", "$patch": "delete"}]}}))
    got = kubectl.json("get", "pod", "p1")
    assert got["metadata"]["finalizers"] == ["b.io/y", "a.io/x"]  # a patch's new items sort first (mergeSortedSlice)
    assert [c["name"] for c in got["spec"]["containers"]] == ["c1"]
    assert got["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    assert got["spec"]["containers"][0]["image"] == "busybox"
    kubectl("patch", "pod", "p1", "--type", "json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')


def test_label_and_annotate_and_selectors(kubectl: Kubectl) -> None:
    kubectl.create(DV)
    kubectl.create({**DV, "metadata": {"name": "dv2", "labels": {"app": "other"}}})
    kubectl("label", "dv", "dv1", "tier=gold")
    kubectl("annotate", "dv", "dv1", "note=hello")
    obj = kubectl.json("get", "dv", "dv1")
    assert obj["metadata"]["labels"] == {"app": "test", "tier": "gold"}
    assert obj["metadata"]["annotations"]["note"] == "hello"
    names = lambda sel: kubectl("get", "dv", "-l", sel, "-o", "name").split()  # noqa: E731
    assert names("tier=gold") == ["datavolume.cdi.kubevirt.io/dv1"]
    assert names("app in (test,other)") == ["datavolume.cdi.kubevirt.io/dv1", "datavolume.cdi.kubevirt.io/dv2"]
    assert names("app notin (test)") == ["datavolume.cdi.kubevirt.io/dv2"]
    assert names("!tier") == ["datavolume.cdi.kubevirt.io/dv2"]
    assert names("tier,app!=other") == ["datavolume.cdi.kubevirt.io/dv1"]
    assert kubectl("get", "dv", "--field-selector", "metadata.name=dv2", "-o", "name").split() == \
        ["datavolume.cdi.kubevirt.io/dv2"]
    kubectl("label", "dv", "dv1", "tier-")
    assert "tier" not in kubectl.json("get", "dv", "dv1")["metadata"]["labels"]


def test_wait_for_condition_jsonpath_and_delete(kubectl: Kubectl, vdisk: VdiskProcess) -> None:
    kubectl.create(DV)
    ns = kubectl.namespace

    def set_status() -> None:
        time.sleep(1)
        with vdisk.http() as c:
            r = c.patch(f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes/dv1/status",
                        headers={"Content-Type": "application/merge-patch+json"},
                        content=json.dumps({"status": {"phase": "Succeeded", "conditions": [
                            {"type": "Ready", "status": "True", "reason": "", "message": ""}]}}))
            assert r.status_code == 200, r.text

    import threading

    t = threading.Thread(target=set_status)
    t.start()
    out = kubectl("wait", "dv/dv1", "--for=condition=Ready", "--timeout=20s")
    t.join()
    assert "condition met" in out
    assert "condition met" in kubectl("wait", "dv/dv1", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=5s")
    kubectl("patch", "dv", "dv1", "--type", "merge", "-p", '{"metadata":{"finalizers":["example.com/hold"]}}')
    kubectl("delete", "dv", "dv1", "--wait=false")
    waiter = subprocess.Popen([kubectl.binary, "--kubeconfig", str(kubectl.kubeconfig), "--cache-dir",
                               str(kubectl.cache_dir), "-n", ns, "wait", "dv/dv1", "--for=delete", "--timeout=20s"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    assert waiter.poll() is None  # still waiting: the finalizer holds the object
    assert kubectl.json("get", "dv", "dv1")["metadata"]["deletionTimestamp"]
    kubectl("patch", "dv", "dv1", "--type", "json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    out, err = waiter.communicate(timeout=20)
    assert waiter.returncode == 0, err
    assert "deleted" in out or "condition met" in out
    assert kubectl.run("get", "dv", "dv1", check=False).returncode != 0


def _owner_and_dependents(kubectl: Kubectl) -> str:
    kubectl.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    uid = kubectl.json("get", "cm", "owner")["metadata"]["uid"]
    for i in (1, 2):
        kubectl.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": f"dep{i}", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                                    "uid": uid, "blockOwnerDeletion": True}]}})
    return uid


def _cm_names(kubectl: Kubectl) -> list[str]:
    return sorted(kubectl("get", "cm", "-o", "name").split())


def test_delete_cascades_in_background(kubectl: Kubectl) -> None:
    _owner_and_dependents(kubectl)
    kubectl("delete", "cm", "owner")
    wait_for(lambda: not [n for n in _cm_names(kubectl) if "dep" in n], what="dependents deleted")


def test_delete_foreground_waits_for_dependents(kubectl: Kubectl) -> None:
    _owner_and_dependents(kubectl)
    kubectl.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "blocker"}})
    # a dependent with a finalizer keeps the owner in foreground deletion
    kubectl("patch", "cm", "dep1", "--type", "merge", "-p", '{"metadata":{"finalizers":["example.com/hold"]}}')
    kubectl("delete", "cm", "owner", "--cascade=foreground", "--wait=false")
    owner = wait_for(lambda: kubectl.json("get", "cm", "owner"), what="owner")
    assert "foregroundDeletion" in owner["metadata"]["finalizers"]
    wait_for(lambda: "configmap/dep2" not in _cm_names(kubectl), what="dep2 deleted")
    assert "configmap/owner" in _cm_names(kubectl)
    kubectl("patch", "cm", "dep1", "--type", "json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    wait_for(lambda: "configmap/owner" not in _cm_names(kubectl), what="owner deleted after its dependents")
    assert _cm_names(kubectl) == ["configmap/blocker"]


def test_delete_orphan_keeps_dependents_without_owner_references(kubectl: Kubectl) -> None:
    _owner_and_dependents(kubectl)
    kubectl("delete", "cm", "owner", "--cascade=orphan")
    wait_for(lambda: "configmap/owner" not in _cm_names(kubectl), what="owner deleted")
    for name in ("dep1", "dep2"):
        assert "ownerReferences" not in kubectl.json("get", "cm", name)["metadata"]


def test_describe_shows_events(kubectl: Kubectl) -> None:
    kubectl.create(DV)
    uid = kubectl.json("get", "dv", "dv1")["metadata"]["uid"]
    kubectl.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "dv1.1"},
                    "involvedObject": {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "name": "dv1",
                                       "namespace": kubectl.namespace, "uid": uid},
                    "reason": "Pending", "message": "PVC dv1 Pending", "type": "Normal", "count": 1,
                    "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
                    "source": {"component": "datavolume-controller"}})
    out = kubectl("describe", "dv", "dv1")
    assert "Events:" in out
    events = out.split("Events:")[1]
    assert "Pending" in events and "PVC dv1 Pending" in events and "datavolume-controller" in events
    ev = kubectl("events", "--for", "dv/dv1")
    assert "PVC dv1 Pending" in ev
    table = kubectl("get", "events").splitlines()
    assert table[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert "datavolume/dv1" in table[1]


def test_explain_reads_the_server_openapi(kubectl: Kubectl) -> None:
    out = kubectl("explain", "dv.spec.source.http")
    assert "KIND:       DataVolume" in out or "KIND:     DataVolume" in out
    assert "certConfigMap" in out and "secretRef" in out
    pvc = kubectl("explain", "pvc.spec.accessModes")
    assert "PersistentVolumeClaim" in pvc


def test_api_resources_lists_vdisk_kinds_with_short_names(kubectl: Kubectl) -> None:
    out = kubectl("api-resources")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["datavolumes"][1] == "dv,dvs"
    assert rows["hyperconvergeds"][1] == "hco,hcos"
    assert rows["virtualmachines"][1] == "vm,vms"
    assert rows["persistentvolumeclaims"][1] == "pvc"
    for kind in ("hostpathprovisioners", "storageprofiles", "cdiconfigs", "uploadtokenrequests",
                 "virtualmachinesnapshots", "virtualmachinerestores", "volumesnapshots", "csidrivers", "nodes"):
        assert kind in rows


def test_get_watch_prints_changes(kubectl: Kubectl) -> None:
    kubectl.create(CM)
    proc = subprocess.Popen([kubectl.binary, "--kubeconfig", str(kubectl.kubeconfig), "--cache-dir",
                             str(kubectl.cache_dir), "-n", kubectl.namespace, "get", "cm", "-w"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        kubectl.create({**CM, "metadata": {"name": "cm2"}})
        kubectl("delete", "cm", "cm1")
        time.sleep(1.5)
    finally:
        proc.terminate()
    out, _ = proc.communicate(timeout=10)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert sum(1 for line in lines if line.split()[:1] == ["NAME"]) == 1  # headers once
    assert any(line.startswith("cm2") for line in lines)


def test_namespace_deletion_removes_its_content(kubectl: Kubectl) -> None:
    ns = kubectl.namespace + "-x"
    kubectl("create", "namespace", ns, namespace=None)
    kubectl("create", "-f", str(EXAMPLES / "19-dv-blank.yaml"), namespace=ns)
    kubectl.run("create", "-f", "-", input=yaml.safe_dump(CM), namespace=ns)
    kubectl("delete", "namespace", ns, "--timeout=30s", namespace=None)
    assert kubectl.run("get", "namespace", ns, check=False, namespace=None).returncode != 0
    res = kubectl.run("create", "-f", "-", input=yaml.safe_dump(CM), namespace=ns, check=False)
    assert res.returncode != 0 and "NotFound" in res.stderr


def test_create_in_a_terminating_namespace_is_forbidden(kubectl: Kubectl) -> None:
    ns = kubectl.namespace + "-t"
    kubectl("create", "namespace", ns, namespace=None)
    kubectl.run("create", "-f", "-", namespace=ns, input=yaml.safe_dump(
        {**CM, "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}))
    kubectl("delete", "namespace", ns, "--wait=false", namespace=None)
    phase = wait_for(lambda: kubectl.json("get", "namespace", ns, namespace=None)["status"]["phase"] ==
                     "Terminating", what="namespace Terminating")
    assert phase
    res = kubectl.run("create", "-f", "-", namespace=ns, input=yaml.safe_dump(CM), check=False)
    assert res.returncode != 0
    assert f"unable to create new content in namespace {ns} because it is being terminated" in res.stderr
    kubectl("patch", "cm", "held", "--type", "json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]',
            namespace=ns)
    wait_for(lambda: kubectl.run("get", "namespace", ns, check=False, namespace=None).returncode != 0,
             what="namespace gone")


def test_dry_run_server_changes_nothing(kubectl: Kubectl) -> None:
    out = kubectl.run("create", "-f", "-", "--dry-run=server", input=yaml.safe_dump(DV)).stdout
    assert "created (server dry run)" in out
    assert kubectl.run("get", "dv", "dv1", check=False).returncode != 0
    kubectl.create(DV)
    kubectl("label", "dv", "dv1", "x=y", "--dry-run=server")
    assert "x" not in kubectl.json("get", "dv", "dv1")["metadata"]["labels"]
    kubectl("delete", "dv", "dv1", "--dry-run=server")
    assert kubectl.json("get", "dv", "dv1")["metadata"]["name"] == "dv1"


def test_generate_name(kubectl: Kubectl) -> None:
    out = kubectl.create({**CM, "metadata": {"generateName": "gen-"}}).stdout
    name = out.split()[0].split("/")[1]
    assert name.startswith("gen-") and len(name) == len("gen-") + 5
    assert kubectl.json("get", "cm", name)["metadata"]["generateName"] == "gen-"


def test_diff_uses_server_dry_run(kubectl: Kubectl) -> None:
    kubectl.apply(CM)
    changed = {**CM, "data": {"a": "9"}}
    res = kubectl.run("diff", "-f", "-", input=yaml.safe_dump(changed), check=False)
    assert res.returncode == 1, res.stderr  # 1 = differences found
    assert '+  a: "9"' in res.stdout
    assert kubectl.json("get", "cm", "cm1")["data"]["a"] == "1"


def test_kubectl_auth_can_i(kubectl: Kubectl) -> None:
    assert kubectl("auth", "can-i", "create", "datavolumes").strip() == "yes"


def test_get_all_and_sort_by(kubectl: Kubectl) -> None:
    kubectl.create(DV)
    kubectl.create({**DV, "metadata": {"name": "dv0"}})
    out = kubectl("get", "dv", "--sort-by=.metadata.name", "-o", "name")
    assert out.split() == ["datavolume.cdi.kubevirt.io/dv0", "datavolume.cdi.kubevirt.io/dv1"]
    assert "datavolume.cdi.kubevirt.io/dv1" in kubectl("get", "all")
    wide = kubectl("get", "dv", "-A").splitlines()
    assert wide[0].split()[0] == "NAMESPACE"


def test_hco_only_in_openshift_cnv(kubectl: Kubectl) -> None:
    res = kubectl.run("create", "-f", str(EXAMPLES / "10-hco-storageworkloads.yaml"), check=False)
    assert res.returncode != 0
    assert "invalid namespace for v1beta1.HyperConverged - please use the openshift-cnv namespace" in res.stderr




def test_kubectl_create_generators_send_protobuf_and_work(kubectl: Kubectl) -> None:
    """kubectl 1.32 sends built-in kinds as protobuf from `kubectl create <kind>`; vdisk decodes them."""
    ns = kubectl.namespace + "-g"
    assert f"namespace/{ns} created" in kubectl("create", "namespace", ns, namespace=None)
    try:
        kubectl("create", "configmap", "ca", "--from-literal=ca.crt=PEM", "--from-literal=x=1", namespace=ns)
        kubectl("create", "secret", "generic", "auth", "--from-literal=accessKeyId=user",
                "--from-literal=secretKey=pa55", namespace=ns)
        kubectl("create", "serviceaccount", "sa1", namespace=ns)
        kubectl("create", "quota", "q1", "--hard=cpu=1,memory=1Gi,persistentvolumeclaims=3", namespace=ns)
        assert kubectl.json("get", "cm", "ca", namespace=ns)["data"] == {"ca.crt": "PEM", "x": "1"}
        secret = kubectl.json("get", "secret", "auth", namespace=ns)
        assert secret["type"] == "Opaque"
        assert secret["data"] == {"accessKeyId": "dXNlcg==", "secretKey": "cGE1NQ=="}
        assert kubectl.json("get", "quota", "q1", namespace=ns)["spec"]["hard"] == {
            "cpu": "1", "memory": "1Gi", "persistentvolumeclaims": "3"}
        assert kubectl.json("get", "sa", "sa1", namespace=ns)["metadata"]["name"] == "sa1"
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", namespace=None)
