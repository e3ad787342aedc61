"""DataVolume -> PVC rendering (R8-R11, R13), CDI's sizing formulas and StorageProfile status (R11, R12)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from vdisk import cdi
from vdisk.controllers.dvrender import Cluster, RenderError, new_pvc, render_pvc_spec, source_annotations
from vdisk.controllers.importpod import pod_resources, running_from_pod
from vdisk.controllers.runtime import Terminal
from vdisk.controllers.storageprofile import clone_strategy, profile_status

MIB = 1024 * 1024
GIB = 1024 * MIB


def sc(name: str, provisioner: str = "kubevirt.io.hostpath-provisioner", default: bool = False,
       **extra: Any) -> dict[str, Any]:
    ann = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"metadata": {"name": name, "annotations": ann, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "provisioner": provisioner, **extra}


def profile(name: str, sets: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"claimPropertySets": sets} if sets else {}}


FS = [{"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]
CLUSTER = Cluster(classes={"local": sc("local", default=True), "blk": sc("blk", "vdisk.io/local-block"),
                           "odd": sc("odd", "example.com/odd")},
                  profiles={"local": profile("local", FS),
                            "blk": profile("blk", [{"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"}]),
                            "odd": profile("odd", None)},
                  config={"status": {"filesystemOverhead": {"global": "0.055", "storageClass": {"local": "0.1"}}}})


def dv(spec: dict[str, Any], name: str = "d") -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": name, "namespace": "ns", "uid": "u1",
                         "annotations": {"a/b": "c", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"source": {"blank": {}}, **spec}}


def storage(size: str = "1Gi", **kw: Any) -> dict[str, Any]:
    return {"storage": {"resources": {"requests": {"storage": size}}, **kw}}


def test_formulas_match_cdi_worked_example() -> None:
    # reference/cdi.md 4.1 at o = 0.06 for 10Gi
    assert cdi.required_space(0.06, 10 * GIB) == 11381663335
    assert cdi.usable_space(0.06, 11381663335) == 10 * GIB
    assert cdi.usable_space(0.055, GIB) == 970 * MIB
    assert cdi.required_space(0.0, 1) == MIB  # aligned up to 1 MiB


def test_storage_api_takes_modes_from_the_profile_and_adds_the_class_overhead() -> None:
    spec = render_pvc_spec(dv(storage()), CLUSTER)
    assert spec["storageClassName"] == "local"  # R10: the default class
    assert spec["accessModes"] == ["ReadWriteOnce"] and spec["volumeMode"] == "Filesystem"
    assert int(spec["resources"]["requests"]["storage"]) == math.ceil(GIB * 1.1)  # per-class 0.1


def test_block_is_not_inflated_and_explicit_values_win() -> None:
    spec = render_pvc_spec(dv(storage(storageClassName="blk")), CLUSTER)
    assert spec["volumeMode"] == "Block" and spec["resources"]["requests"]["storage"] == "1Gi"
    spec = render_pvc_spec(dv(storage(storageClassName="local", accessModes=["ReadWriteMany"])), CLUSTER)
    assert spec["accessModes"] == ["ReadWriteMany"]


def test_pvc_api_is_used_as_given() -> None:
    pvc = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    assert render_pvc_spec(dv({"pvc": pvc}), CLUSTER) == pvc


def test_missing_access_modes_are_explained() -> None:
    with pytest.raises(RenderError) as exc:
        render_pvc_spec(dv(storage(storageClassName="odd")), CLUSTER)
    assert exc.value.reason == "ErrClaimNotValid"
    assert exc.value.message == "no accessMode specified in StorageProfile odd"
    nodefault = Cluster(classes={"odd": sc("odd", "example.com/odd")}, profiles={}, config={})
    with pytest.raises(RenderError, match="PVC spec is missing accessMode and no storageClass to choose profile"):
        render_pvc_spec(dv(storage()), nodefault)
    with pytest.raises(RenderError, match="ContentType Archive cannot have block volumeMode"):
        render_pvc_spec(dv({**storage(volumeMode="Block"), "contentType": "archive"}), CLUSTER)


def test_pvc_object_carries_annotations_and_owner() -> None:
    d = dv({**storage(), "source": {"http": {"url": "http://x/y.img", "secretRef": "s", "certConfigMap": "c",
                                             "extraHeaders": ["A: 1"], "checksum": "sha256:ab"}},
            "priorityClassName": "high", "preallocation": True})
    pvc = new_pvc(d, render_pvc_spec(d, CLUSTER), CLUSTER)
    ann = pvc["metadata"]["annotations"]
    assert ann["a/b"] == "c" and "kubectl.kubernetes.io/last-applied-configuration" not in ann
    assert ann[cdi.ANN_SOURCE] == "http" and ann[cdi.ANN_ENDPOINT] == "http://x/y.img"
    assert ann[cdi.ANN_SECRET] == "s" and ann[cdi.ANN_CERT_CONFIGMAP] == "c"
    assert ann[f"{cdi.ANN_EXTRA_HEADERS}.0"] == "A: 1" and ann[cdi.ANN_CHECKSUM] == "sha256:ab"
    assert ann[cdi.ANN_PRIORITY_CLASS] == "high" and ann[cdi.ANN_PREALLOCATION_REQUESTED] == "true"
    assert pvc["metadata"]["ownerReferences"][0] | {"kind": "DataVolume", "uid": "u1", "controller": True} == \
        pvc["metadata"]["ownerReferences"][0]


def test_insecure_registries_match_on_host() -> None:
    d = dv({"source": {"registry": {"url": "docker://reg.example:5000/a/b:1"}}})
    assert source_annotations(d, ["reg.example:5000"])[cdi.ANN_INSECURE] == "true"
    assert cdi.ANN_INSECURE not in source_annotations(d, ["other:5000"])


def test_storage_profiles() -> None:
    st = profile_status({"spec": {}}, sc("local"), [])
    assert st["claimPropertySets"] == FS and st["cloneStrategy"] == "copy"
    assert "claimPropertySets" not in profile_status({"spec": {}}, sc("odd", "example.com/odd"), [])
    snap = [{"metadata": {"name": "vsc"}, "driver": "kubevirt.io.hostpath-provisioner"}]
    assert clone_strategy({}, sc("local"), snap) == "snapshot"
    assert clone_strategy({"cloneStrategy": "snapshot"}, sc("local"), []) == "copy"  # no snapshot class
    assert clone_strategy({"cloneStrategy": "csi-clone"}, sc("local"), []) == "csi-clone"
    with pytest.raises(Terminal, match="both accessModes and volumeMode"):
        profile_status({"spec": {"claimPropertySets": [{"accessModes": ["ReadWriteOnce"]}]}}, sc("x"), [])


def test_worker_resources_and_running_condition() -> None:
    zero = {"status": {"defaultPodResourceRequirements": {"requests": {"cpu": "0", "memory": "0"},
                                                          "limits": {"cpu": "0", "memory": "0"}}}}
    assert pod_resources(zero) == {"requests": {"cpu": "0", "memory": "0"}}  # zero limits mean none
    crash = {"status": {"containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                               "lastState": {"terminated": {"reason": "Error",
                                                                            "message": "boom"}}}]}}
    assert running_from_pod(crash) == ("false", "Error", "boom")
    done = {"status": {"containerStatuses": [{"state": {"terminated": {
        "reason": "Completed", "message": '{"message": "Import Complete"}'}}}]}}
    assert running_from_pod(done) == ("false", "Completed", "Import Complete")
    assert cdi.simplify_message("virtual image size 5 is larger than the reported available storage 1. "
                                "A larger PVC is required") == cdi.TOO_SMALL


def test_worker_names_fit_a_label_and_stay_distinct() -> None:
    """CDI naming.GetResourceName: short names unchanged, long ones cut to 63 with a hash of the whole."""
    from vdisk import cdi

    assert cdi.upload_pod_name("disk") == "cdi-upload-disk"
    assert cdi.importer_pod_name("disk") == "importer-disk"
    assert cdi.scratch_name("disk") == "disk-scratch"
    a, b = "v" * 60 + "-one", "v" * 60 + "-two"
    for fn in (cdi.upload_pod_name, cdi.importer_pod_name, cdi.scratch_name):
        assert len(fn(a)) <= 63 and fn(a) != fn(b) and fn(a) == fn(a)
        assert fn(a)[-9] == "-" and fn(a)[0].isalnum() and fn(a)[-1].isalnum()


def test_controller_annotations_on_a_dv_are_not_copied_to_its_claim() -> None:
    """A DV carrying storage.pod.phase=Succeeded or populatedFor must not fake a finished import."""
    dv = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
          "metadata": {"name": "d", "namespace": "n", "uid": "u", "annotations": {
              "cdi.kubevirt.io/storage.pod.phase": "Succeeded", "cdi.kubevirt.io/storage.populatedFor": "d",
              "cdi.kubevirt.io/storage.import.fatalError": "true",
              "cdi.kubevirt.io/storage.pod.retainAfterCompletion": "true", "user.example/keep": "yes"}},
          "spec": {"source": {"blank": {}}}}
    ann = new_pvc(dv, {}, Cluster({}, {}, {}))["metadata"]["annotations"]
    assert "cdi.kubevirt.io/storage.pod.phase" not in ann and "cdi.kubevirt.io/storage.populatedFor" not in ann
    assert "cdi.kubevirt.io/storage.import.fatalError" not in ann
    assert ann["cdi.kubevirt.io/storage.pod.retainAfterCompletion"] == "true" and ann["user.example/keep"] == "yes"
