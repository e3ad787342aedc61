"""Storage on two real node agents: HPP pools, provisioning, binding, reclaim, Block, expansion, quota, pods."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from typing import Any

import pytest

from tests.conftest import EXAMPLES, Kubectl, start_vdisk, wait_for
from tests.e2e.conftest import Cluster, example14_loop_device, node_ready, pod_logs_when_done

Obj = dict[str, Any]


def claim(name: str, size: str, cls: str | None = None, mode: str | None = None, access: str = "ReadWriteOnce",
          selector: Obj | None = None) -> Obj:
    spec: Obj = {"accessModes": [access], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    if mode:
        spec["volumeMode"] = mode
    if selector:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def pod(name: str, script: str, node: str | None = None, mounts: dict[str, str] | None = None,
        devices: dict[str, str] | None = None, restart: str = "Never", **extra: Any) -> Obj:
    mounts, devices = mounts or {}, devices or {}
    container: Obj = {"name": "c", "image": "busybox", "command": ["sh", "-c", script],
                      "volumeMounts": [{"name": f"v{i}", "mountPath": p} for i, (c, p) in enumerate(mounts.items())],
                      "volumeDevices": [{"name": f"d{i}", "devicePath": p} for i, (c, p) in enumerate(devices.items())]}
    container.update(extra.pop("container", {}))
    spec: Obj = {"restartPolicy": restart, "containers": [container],
                 "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(mounts)] +
                 [{"name": f"d{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(devices)]}
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    spec.update(extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def phase(k: Kubectl, kind: str, name: str) -> str:
    return str(k.json("get", kind, name).get("status", {}).get("phase", ""))


def bound(k: Kubectl, name: str, timeout: float = 20) -> Obj:
    return wait_for(lambda: (lambda o: o if o["status"].get("phase") == "Bound" else None)(k.json("get", "pvc", name)),
                    timeout=timeout, what=f"claim {name} Bound")


def pv_of(k: Kubectl, pvc: Obj) -> Obj:
    return k.json("get", "pv", pvc["spec"]["volumeName"])


def volume_dir(c: Cluster, k: Kubectl, pv: Obj, node: str) -> Any:
    pool = pv["spec"]["csi"]["volumeAttributes"]["storagePool"]
    pools = json.loads(k.json("get", "node", node)["metadata"]["annotations"]["vdisk.io/storage-pools"])
    path = next(p["path"] for p in pools if p["name"] == pool)
    from pathlib import Path

    return Path(path) / "csi" / pv["metadata"]["name"]


@pytest.fixture
def k(cluster: Cluster, namespace: str) -> Kubectl:
    kc = cluster.kubectl(namespace)
    return kc


@pytest.fixture
def namespace(cluster: Cluster) -> Any:
    name = f"s-{uuid.uuid4().hex[:8]}"
    kc = cluster.kubectl()
    kc("create", "namespace", name)
    yield name
    kc.run("delete", "namespace", name, "--wait=false", check=False)


def test_both_nodes_register_with_labels_and_pools(cluster: Cluster) -> None:
    k = cluster.kubectl()
    lines = k("get", "nodes").splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [["node00", "Ready"], ["node01", "Ready"]]
    node = k.json("get", "node", "node01")
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node01"
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    pools = {p["name"]: p for p in json.loads(node["metadata"]["annotations"]["vdisk.io/storage-pools"])}
    assert pools["local"]["ready"] and pools["local"]["capacity"] > 0
    assert pools["local"]["path"].startswith(str(cluster.roots["node01"]))


def test_immediate_claim_is_provisioned_on_the_node_with_most_space(cluster: Cluster, k: Kubectl) -> None:
    """R3: the default class `local` (Immediate) provisions at once; the volume dir exists on its node."""
    k.create(claim("c1", "1Gi"))
    pvc = bound(k, "c1")
    pv = pv_of(k, pvc)
    node = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
    assert node in ("node00", "node01")
    assert pv["spec"]["csi"]["driver"] == "kubevirt.io.hostpath-provisioner"
    assert pv["spec"]["capacity"]["storage"] == "1Gi"
    assert pvc["status"]["capacity"]["storage"] == "1Gi"
    assert volume_dir(cluster, k, pv, node).is_dir()
    events = k("get", "events", "--field-selector", "involvedObject.name=c1")
    assert "ProvisioningSucceeded" in events


def test_wffc_claim_binds_only_when_a_pod_uses_it_on_that_pods_node(cluster: Cluster, k: Kubectl) -> None:
    """R4: a WaitForFirstConsumer claim waits, then is provisioned on the pod's node."""
    k.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "wffc-local"},
             "provisioner": "kubevirt.io.hostpath-provisioner", "parameters": {"storagePool": "local"},
             "volumeBindingMode": "WaitForFirstConsumer"})
    k.create(claim("w1", "100Mi", "wffc-local"))
    time.sleep(1.5)
    assert phase(k, "pvc", "w1") == "Pending"
    assert "waiting for first consumer to be created before binding" in k("describe", "pvc", "w1")
    k.create(pod("consumer", "echo data > /d/f && cat /d/f", node="node01", mounts={"w1": "/d"}))
    assert pod_logs_when_done(k, "consumer").strip() == "data"
    pvc = bound(k, "w1")
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "node01"
    pv = pv_of(k, pvc)
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["node01"]
    assert (volume_dir(cluster, k, pv, "node01") / "f").read_text() == "data\n"
    assert "Used By:" in k("describe", "pvc", "w1") and "consumer" in k("describe", "pvc", "w1")


def test_selector_binds_the_labelled_local_pv_on_node01(cluster: Cluster, k: Kubectl) -> None:
    """R34, example 17: a PV on node01 labelled node=node01 is chosen by a claim's selector."""
    path = cluster.host_path("node01", "/mnt/local-storage/local/disk1")
    path.mkdir(parents=True, exist_ok=True)
    k.run("delete", "pv", "destination-pv", "--ignore-not-found", "--wait=true", check=False)
    k("create", "-f", str(EXAMPLES / "17-local-destination-pv.yaml"))
    try:
        k("label", "pv", "destination-pv", "node=node01")
        k.create(claim("dest", "10Gi", "local", selector={"matchLabels": {"node": "node01"}}))
        pvc = bound(k, "dest")
        assert pvc["spec"]["volumeName"] == "destination-pv"
        k.create(pod("writer", "echo moved > /d/marker", mounts={"dest": "/d"}))
        pod_logs_when_done(k, "writer")
        assert k.json("get", "pod", "writer")["spec"]["nodeName"] == "node01"
        assert (path / "marker").read_text() == "moved\n"
    finally:
        k.run("delete", "pod", "writer", "--ignore-not-found", check=False)
        k.run("delete", "pvc", "dest", "--ignore-not-found", check=False)
        k.run("delete", "pv", "destination-pv", "--ignore-not-found", "--wait=false", check=False)


def test_delete_removes_the_data_and_retain_keeps_it(cluster: Cluster, k: Kubectl) -> None:
    """R43: Delete removes directory and PV; Retain leaves both, PV Released; Recycle is refused."""
    k.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local-retain"},
             "provisioner": "kubevirt.io.hostpath-provisioner", "parameters": {"storagePool": "local"},
             "reclaimPolicy": "Retain"})
    k.create(claim("del", "64Mi"))
    k.create(claim("keep", "64Mi", "local-retain"))
    dpv, kpv = pv_of(k, bound(k, "del")), pv_of(k, bound(k, "keep"))
    dnode = dpv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
    knode = kpv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
    ddir, kdir = volume_dir(cluster, k, dpv, dnode), volume_dir(cluster, k, kpv, knode)
    (kdir / "precious").write_text("x")
    k("delete", "pvc", "del", "keep")
    wait_for(lambda: k.run("get", "pv", dpv["metadata"]["name"], check=False).returncode != 0, what="PV deleted")
    assert not ddir.exists()
    wait_for(lambda: phase(k, "pv", kpv["metadata"]["name"]) == "Released", what="PV Released")
    assert (kdir / "precious").read_text() == "x"
    res = k.run("patch", "pv", kpv["metadata"]["name"], "-p",
                '{"spec":{"persistentVolumeReclaimPolicy":"Recycle"}}', check=False)
    assert res.returncode != 0 and "Recycle" in res.stderr
    # a Released volume whose policy becomes Delete is reclaimed (kubectl patch pv, seed 10.19.17)
    k("patch", "pv", kpv["metadata"]["name"], "-p", '{"spec":{"persistentVolumeReclaimPolicy":"Delete"}}')
    wait_for(lambda: not kdir.exists(), what="data removed after policy became Delete")
    wait_for(lambda: k.run("get", "pv", kpv["metadata"]["name"], check=False).returncode != 0, what="PV gone")


def test_static_pv_with_delete_policy_goes_failed_when_released(cluster: Cluster, k: Kubectl) -> None:
    """Seed 10.19.17: a statically provisioned PV needs Retain; with Delete it fails when released."""
    name = f"static-{uuid.uuid4().hex[:6]}"
    path = cluster.host_path("node00", f"/mnt/{name}")
    path.mkdir(parents=True)
    k.create({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
              "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                       "persistentVolumeReclaimPolicy": "Delete", "local": {"path": f"/mnt/{name}"},
                       "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                           {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node00"]}]}]}}}})
    try:
        k.create(claim("st", "1Gi", "manual"))
        bound(k, "st")
        k("delete", "pvc", "st")
        wait_for(lambda: phase(k, "pv", name) == "Failed", what="PV Failed")
        assert "VolumeFailedDelete" in k("describe", "pv", name)
        assert path.is_dir()
    finally:
        k.run("delete", "pv", name, "--wait=false", check=False)


def test_block_claim_is_a_real_block_device_and_grows(cluster: Cluster, k: Kubectl) -> None:
    """R6, R44: a Block claim is a loop device of the requested size; raising the request grows it."""
    k.create(claim("blk", "64Mi", "local-block", mode="Block"))
    bound(k, "blk")
    k.create(pod("size1", "blockdev --getsize64 /dev/xvda", devices={"blk": "/dev/xvda"}))
    assert pod_logs_when_done(k, "size1").strip() == str(64 * 1024 * 1024)
    k("patch", "pvc", "blk", "-p", '{"spec":{"resources":{"requests":{"storage":"96Mi"}}}}')
    wait_for(lambda: k.json("get", "pvc", "blk")["status"]["capacity"]["storage"] == "96Mi", what="capacity 96Mi")
    k.create(pod("size2", "blockdev --getsize64 /dev/xvda", devices={"blk": "/dev/xvda"}))
    assert pod_logs_when_done(k, "size2").strip() == str(96 * 1024 * 1024)
    res = k.run("patch", "pvc", "blk", "-p", '{"spec":{"resources":{"requests":{"storage":"32Mi"}}}}', check=False)
    assert res.returncode != 0 and "field can not be less than previous value" in res.stderr
    assert "VolumeResizeSuccessful" in k("describe", "pvc", "blk")


def test_filesystem_expansion_grows_the_disk_image_keeping_the_overhead(cluster: Cluster, k: Kubectl) -> None:
    """R44, example 24: disk.img grows to the new size less the filesystem overhead (0.055 default)."""
    k("create", "-f", str(EXAMPLES / "24-pvc-expand.yaml"))
    pvc = bound(k, "vm-disk-expand")
    pv = pv_of(k, pvc)
    node = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
    disk = volume_dir(cluster, k, pv, node) / "disk.img"
    disk.write_bytes(b"")
    os.truncate(disk, 1024 * 1024)
    k("patch", "pvc", "vm-disk-expand", "-p", '{"spec":{"resources":{"requests":{"storage":"4Gi"}}}}')
    wait_for(lambda: k.json("get", "pvc", "vm-disk-expand")["status"]["capacity"]["storage"] == "4Gi",
             what="capacity 4Gi")
    cfg = k.json("get", "cdiconfig", "config")["status"]["filesystemOverhead"]
    overhead = float(cfg["storageClass"].get("local", cfg["global"]))
    want = (-(-4 * 1024**3 // 1) * 1000 // int(1000 * (1 + overhead)))
    size = disk.stat().st_size
    assert abs(size - want) <= 2 * 1024 * 1024 and size % (1024 * 1024) == 0, (size, want)
    assert size < 4 * 1024**3


def test_loop_device_pv_on_node01_from_the_seed_recipe(cluster: Cluster, k: Kubectl) -> None:
    """R22, example 14: dd + losetup on node01, a local Block PV at /dev/loop10, bound by a Block claim."""
    with example14_loop_device(cluster):
        try:
            k.run("delete", "pv", "local-block-pv10", "--ignore-not-found", check=False)
            k("create", "-f", str(EXAMPLES / "14-local-block-pv.yaml"))
            k.create(claim("iso", "2Gi", "local", mode="Block"))
            assert bound(k, "iso")["spec"]["volumeName"] == "local-block-pv10"
            k.create(pod("probe", "blockdev --getsize64 /dev/disk0", devices={"iso": "/dev/disk0"}))
            assert pod_logs_when_done(k, "probe").strip() == str(2 * 1024**3)
            assert k.json("get", "pod", "probe")["spec"]["nodeName"] == "node01"
        finally:
            k.run("delete", "pod", "probe", "--ignore-not-found", check=False)
            k.run("delete", "pvc", "iso", "--ignore-not-found", check=False)
            k.run("delete", "pv", "local-block-pv10", "--ignore-not-found", "--wait=false", check=False)


def test_pods_run_log_and_report_exit_codes(cluster: Cluster, k: Kubectl) -> None:
    k.create(pod("ok", "echo out; echo err >&2; echo bye > /dev/termination-log"))
    assert pod_logs_when_done(k, "ok").splitlines() == ["out", "err"]
    ok = k.json("get", "pod", "ok")
    term = ok["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (ok["status"]["phase"], term["exitCode"], term["reason"], term["message"]) == \
        ("Succeeded", 0, "Completed", "bye\n")
    k.create(pod("bad", "exit 3"))
    pod_logs_when_done(k, "bad")
    bad = k.json("get", "pod", "bad")
    assert bad["status"]["phase"] == "Failed"
    assert bad["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert "Error" in k("get", "pod", "bad")
    k.create(pod("flaky", "n=$(cat /d/n 2>/dev/null || echo 0); echo $((n+1)) > /d/n; [ $n -ge 2 ]",
                 mounts={"scratch": "/d"}, restart="OnFailure"))
    k.create(claim("scratch", "16Mi"))
    wait_for(lambda: phase(k, "pod", "flaky") == "Succeeded", timeout=40, what="flaky pod succeeded")
    assert k.json("get", "pod", "flaky")["status"]["containerStatuses"][0]["restartCount"] == 2
    k.create(pod("nope", "true", container={"image": "quay.io/nobody/unknown:1"}))
    reason = wait_for(lambda: k.json("get", "pod", "nope")["status"].get("containerStatuses", [{}])[0]
                      .get("state", {}).get("waiting", {}).get("reason"), what="waiting reason")
    assert reason == "ErrImagePull"
    assert "failed to pull image" in k("describe", "pod", "nope")
    k.create(pod("forever", "sleep 600"))
    wait_for(lambda: phase(k, "pod", "forever") == "Running", what="Running")
    t0 = time.monotonic()
    k("delete", "pod", "forever")
    assert time.monotonic() - t0 < 20


def test_quota_refuses_claims_and_pods_over_it(cluster: Cluster, k: Kubectl) -> None:
    """R15's precondition: the upstream messages for storage and for pods without limits."""
    k("create", "quota", "q", "--hard=requests.storage=1Gi,persistentvolumeclaims=2,limits.cpu=1,limits.memory=1Gi")
    k.create(claim("small", "512Mi"))
    res = k.create(claim("big", "1Gi"), check=False)
    assert res.returncode != 0
    assert ('persistentvolumeclaims "big" is forbidden: exceeded quota: q, requested: requests.storage=1Gi, '
            "used: requests.storage=512Mi, limited: requests.storage=1Gi") in res.stderr
    res = k.create(pod("nolimits", "true"), check=False)
    assert res.returncode != 0
    assert 'pods "nolimits" is forbidden: failed quota: q: must specify limits.cpu for: c; limits.memory for: c' \
        in res.stderr
    k.create(pod("withlimits", "true", container={"resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}}))
    used = wait_for(lambda: k.json("get", "quota", "q").get("status", {}).get("used", {}).get("limits.cpu") == "500m"
                    and k.json("get", "quota", "q")["status"]["used"], what="quota usage")
    assert used["requests.storage"] == "512Mi" and used["persistentvolumeclaims"] == "1"


def test_hpp_pool_on_the_os_filesystem_and_a_bad_path_are_reported(cluster: Cluster) -> None:
    """R1, R2: example 01 (with --validate=warn) works but says its pool shares the OS filesystem; a relative
    path is Degraded naming the pool."""
    k = cluster.kubectl()
    k.run("delete", "hostpathprovisioner", "--all", "--wait=true", check=False)
    k("create", "--validate=warn", "-f", str(EXAMPLES / "01-hpp_cr.yaml"))
    try:
        def cond(t: str) -> Obj | None:
            for c in k.json("get", "hostpathprovisioner", "hostpath-provisioner").get("status", {}).get(
                    "conditions", []):
                if c["type"] == t:
                    return c
            return None

        wait_for(lambda: (cond("Available") or {}).get("status") == "True", what="HPP Available")
        shared = cond("StoragePoolSharedWithOS")
        assert shared and shared["status"] == "True" and "any_name" in shared["message"]
        assert "PoolPathSharedWithOS" in k("describe", "hostpathprovisioner", "hostpath-provisioner")
        assert cluster.host_path("node01", "/var/myvolumes/csi").is_dir()
        k("patch", "hostpathprovisioner", "hostpath-provisioner", "--type", "merge", "-p",
          '{"spec":{"storagePools":[{"name":"any_name","path":"relative/dir"}]}}')
        wait_for(lambda: (cond("Degraded") or {}).get("status") == "True", what="HPP Degraded")
        assert "any_name" in cond("Degraded")["message"] and "not absolute" in cond("Degraded")["message"]
    finally:
        k.run("delete", "hostpathprovisioner", "hostpath-provisioner", "--wait=true", "--timeout=30s", check=False)


def test_template_pool_on_xfs_block_claims_serves_volumes_with_reflink(cluster: Cluster) -> None:
    """R5, examples 02-04: pool claims per node from the template, formatted XFS, mounted, used by WFFC claims."""
    k = cluster.kubectl()
    k.run("delete", "hostpathprovisioner", "--all", "--wait=true", check=False)
    k.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "my-storage-class"},
             "provisioner": "vdisk.io/local-block", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})
    k.run("delete", "sc", "hostpath-csi", "--ignore-not-found", check=False)
    k("create", "-f", str(EXAMPLES / "02-storageclass_csi.yaml"))
    k("create", "-f", str(EXAMPLES / "04-hpp_pvc_template_pool.yaml"))
    ns = f"tp-{uuid.uuid4().hex[:6]}"
    k("create", "namespace", ns)
    kn = cluster.kubectl(ns)
    try:
        for node in ("node00", "node01"):
            wait_for(lambda n=node: phase(k.__class__(k.binary, k.kubeconfig, k.cache_dir, "openshift-cnv"), "pvc",
                                          f"hpp-pool-my-storage-pool-{n}") == "Bound", timeout=30,
                     what=f"pool claim on {node}")
        mount = cluster.host_path("node01", "/var/myvolumes/csi")
        wait_for(lambda: os.path.ismount(mount), timeout=30, what="template pool mounted on node01")
        fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", str(mount)], capture_output=True,
                                text=True).stdout.strip()
        assert fstype == "xfs"
        for i in range(3):
            kn.create(claim(f"tv{i}", "100Mi", "hostpath-csi"))
            kn.create(pod(f"tp{i}", f"echo {i} > /d/f; cp --reflink=always /d/f /d/g && cat /d/g", node="node01",
                          mounts={f"tv{i}": "/d"}))
        for i in range(3):
            assert pod_logs_when_done(kn, f"tp{i}").strip() == str(i)
        volumes = [p.name for p in mount.iterdir() if p.name.startswith("pvc-")]
        assert len(volumes) == 3
        def pool_status() -> Obj | None:
            st = k.json("get", "hostpathprovisioner", "hostpath-provisioner").get("status", {})
            pools = st.get("storagePoolStatuses") or [{}]
            return pools[0] if pools[0].get("currentReady") == 2 else None

        pool = wait_for(pool_status, timeout=30, what="pool Ready on both nodes")
        assert pool["name"] == "my-storage-pool" and pool["phase"] == "Ready" and pool["desiredReady"] == 2
        # the seed's iso-pvc (example 03) uses the template's class: a Block claim of the loop provisioner
        kn("create", "-f", str(EXAMPLES / "03-iso-pvc.yaml"))
        assert bound(kn, "iso-pvc", timeout=30)["spec"]["volumeMode"] == "Block"
    finally:
        k.run("delete", "namespace", ns, "--timeout=60s", check=False)
        k.run("delete", "hostpathprovisioner", "hostpath-provisioner", "--timeout=60s", check=False)
    assert not os.path.ismount(cluster.host_path("node01", "/var/myvolumes/csi"))
    claims = k("get", "pvc", "-n", "openshift-cnv", "-o", "name").split()
    assert "persistentvolumeclaim/hpp-pool-my-storage-pool-node01" in claims  # pool claims outlive the CR


def test_orphan_volume_dirs_are_cleaned_and_data_survives_a_kill(cluster: Cluster, k: Kubectl) -> None:
    """A crash between creating a volume dir and its PV leaves no orphan; SIGKILL of the node loses no data."""
    k.create(claim("survivor", "32Mi", "wffc-local" if k.run("get", "sc", "wffc-local", check=False).returncode == 0
                   else "local"))
    k.create(pod("w", "echo kept > /d/f", node="node01", mounts={"survivor": "/d"}))
    pod_logs_when_done(k, "w")
    pv = pv_of(k, bound(k, "survivor"))
    vdir = volume_dir(cluster, k, pv, "node01")
    orphan = vdir.parent / f"pvc-{uuid.uuid4()}"
    orphan.mkdir()
    cluster.stop_node01(signal.SIGKILL)
    cluster.start_node01()
    wait_for(lambda: node_ready(k, "node01") and not orphan.exists(), timeout=30, what="orphan removed")
    assert (vdir / "f").read_text() == "kept\n"
    k.create(pod("r", "cat /d/f", node="node01", mounts={"survivor": "/d"}))
    assert pod_logs_when_done(k, "r").strip() == "kept"


def test_a_node_that_stops_heartbeating_goes_not_ready(cluster: Cluster) -> None:
    k = cluster.kubectl()
    cluster.stop_node01(signal.SIGKILL)
    try:
        wait_for(lambda: "NotReady" in k("get", "node", "node01"), timeout=30, what="node01 NotReady")
        ready = next(c for c in k.json("get", "node", "node01")["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"
    finally:
        cluster.start_node01()
        wait_for(lambda: node_ready(k, "node01"), timeout=30, what="node01 Ready again")


def test_restarting_vdisk_up_keeps_volumes(tmp_path: Any) -> None:
    """Killing and restarting `vdisk up` loses no PV data; Block volumes get their loop devices back."""
    root = tmp_path / "root"
    root.mkdir()
    vp = start_vdisk(tmp_path / "data", "--node-name", "solo", "--host-root", str(root))
    k = Kubectl(vp_kubectl(), vp.kubeconfig, tmp_path / "cache", "default")
    try:
        k.create(claim("fs", "16Mi"))
        k.create(claim("bl", "16Mi", "local-block", mode="Block"))
        bound(k, "fs")
        bound(k, "bl")
        k.create(pod("w", "echo persisted > /d/f; echo -n blockdata | dd of=/dev/b conv=notrunc 2>/dev/null",
                     mounts={"fs": "/d"}, devices={"bl": "/dev/b"}))
        pod_logs_when_done(k, "w")
        vp.stop(signal.SIGKILL)
        vp = start_vdisk(tmp_path / "data", "--node-name", "solo", "--host-root", str(root))
        k = Kubectl(vp_kubectl(), vp.kubeconfig, tmp_path / "cache2", "default")
        k.create(pod("r", "cat /d/f; head -c 9 /dev/b; echo", mounts={"fs": "/d"}, devices={"bl": "/dev/b"}))
        assert pod_logs_when_done(k, "r").splitlines() == ["persisted", "blockdata"]
    finally:
        vp.stop()
        for line in subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True,
                                   text=True).stdout.splitlines():
            if str(tmp_path) in line:
                subprocess.run(["losetup", "-d", line.split()[0]], check=False)


def vp_kubectl() -> str:
    from tests.conftest import kubectl_binaries

    return kubectl_binaries()[0]




def test_container_limits_are_applied_with_cgroups(cluster: Cluster, k: Kubectl) -> None:
    """Limits reach the kernel: the container's own cgroup carries its memory and cpu limits."""
    script = ("cg=$(grep -E ':memory:|^0::' /proc/self/cgroup | head -1 | cut -d: -f3); "
              "if [ -f /sys/fs/cgroup/memory$cg/memory.limit_in_bytes ]; then "
              "cat /sys/fs/cgroup/memory$cg/memory.limit_in_bytes; "
              "cat /sys/fs/cgroup/cpu$(grep ':cpu,cpuacct:\\|:cpu:' /proc/self/cgroup | head -1 | cut -d: -f3)"
              "/cpu.cfs_quota_us; "
              "else cat /sys/fs/cgroup$cg/memory.max; cut -d' ' -f1 /sys/fs/cgroup$cg/cpu.max; fi")
    k.create(pod("limited", script, container={"resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}))
    lines = pod_logs_when_done(k, "limited").split()
    assert lines == [str(64 * 1024 * 1024), "25000"], lines


def test_a_claim_larger_than_any_pool_stays_pending_with_an_event(cluster: Cluster, k: Kubectl) -> None:
    """Capacity is tracked per node and pool: no over-commit, and the claim says why it waits."""
    k.create(claim("huge", "100Ti"))
    # (right after a node restart the first attempt may find no Ready node: the retry then says why)
    wait_for(lambda: 'bytes free in storage pool "local"' in k(
        "get", "events", "--field-selector", "involvedObject.name=huge,reason=ProvisioningFailed"), timeout=15,
        what="capacity event")
    assert phase(k, "pvc", "huge") == "Pending"


def test_a_claim_in_use_by_a_pod_is_deleted_only_after_the_pod(cluster: Cluster, k: Kubectl) -> None:
    """kubernetes.io/pvc-protection keeps a used claim (and its volume) until the pod is gone."""
    k.create(claim("used", "16Mi"))
    k.create(pod("user", "sleep 600", mounts={"used": "/d"}))
    wait_for(lambda: phase(k, "pod", "user") == "Running", what="pod Running")
    k("delete", "pvc", "used", "--wait=false")
    time.sleep(1.5)
    got = k.json("get", "pvc", "used")
    assert got["metadata"]["deletionTimestamp"] and "kubernetes.io/pvc-protection" in got["metadata"]["finalizers"]
    assert "Terminating" in k("get", "pvc", "used")
    k("delete", "pod", "user")
    wait_for(lambda: k.run("get", "pvc", "used", check=False).returncode != 0, what="claim deleted after the pod")
