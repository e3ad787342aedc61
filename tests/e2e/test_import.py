"""DataVolume imports end to end: kubectl against `vdisk up`, real nginx, a real registry, qemu-img (issue 4).

R7-R17, R23, R35, R39-R42, R45. Each test checks what a user checks: `kubectl get dv` phase and progress,
`kubectl describe dv` conditions and events, and the disk itself (qemu-img compare, holes, size).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Kubectl, VdiskProcess, kubectl_binaries, start_vdisk, wait_for
from tests.servers import (
    MIB,
    Images,
    Nginx,
    Registry,
    allocated,
    disk_layer,
    push_container_disk,
    stalling_server,
)
from vdisk.dataplane import qemu_img

GIB = 1024 * MIB
EXAMPLES = ROOT / "tests" / "data" / "examples"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VdiskProcess, Path]]:
    tmp = tmp_path_factory.mktemp("import")
    root = tmp / "root"
    root.mkdir()
    vp = start_vdisk(tmp / "data", "--host-root", str(root), "--pod-restart-backoff", "0.3",
                     env={"VDISK_IMPORT_STALL_TIMEOUT": "2"})
    try:
        yield vp, root
    finally:
        vp.stop()
        leftover = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True)
        for line in leftover.stdout.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[1].startswith(str(tmp)):
                subprocess.run(["losetup", "-d", parts[0]], check=False)


@pytest.fixture
def k(server: tuple[VdiskProcess, Path], request: pytest.FixtureRequest) -> Iterator[Kubectl]:
    vp, _ = server
    cache = Path(tempfile.mkdtemp(prefix="kubectl-cache-"))
    ns = "imp-" + os.urandom(3).hex()
    kc = Kubectl(kubectl_binaries()[0], vp.kubeconfig, cache, ns)
    kc("create", "namespace", ns, namespace=None)
    yield kc
    kc.run("delete", "namespace", ns, "--wait=false", namespace=None, check=False)


def dv(name: str, source: dict[str, Any], size: str = "256Mi", api: str = "storage", **spec: Any) -> dict[str, Any]:
    target: dict[str, Any] = {"resources": {"requests": {"storage": size}}}
    if api == "pvc":
        target["accessModes"] = ["ReadWriteOnce"]
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": name},
            "spec": {"source": source, api: target, **spec}}


def http(url: str, **extra: Any) -> dict[str, Any]:
    return {"http": {"url": url, **extra}}


def phase(k: Kubectl, name: str) -> str:
    return k("get", "dv", name, "-o", "jsonpath={.status.phase}").strip()


def wait_phase(k: Kubectl, name: str, want: str, timeout: float = 90) -> dict[str, Any]:
    wait_for(lambda: phase(k, name) == want, timeout=timeout, interval=0.3,
             what=f"dv {name} {want}: {k.run('describe', 'dv', name, check=False).stdout[-3000:]}")
    obj: dict[str, Any] = k.json("get", "dv", name)
    return obj


def dv_when(k: Kubectl, name: str, pred: Any) -> dict[str, Any] | None:
    """The DataVolume if `pred(dv)` holds (for wait_for)."""
    obj: dict[str, Any] = k.json("get", "dv", name)
    return obj if obj.get("status", {}).get("conditions") and pred(obj) else None


def condition(dvobj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in dvobj["status"]["conditions"] if c["type"] == kind)


def events(k: Kubectl, name: str, kind: str = "DataVolume") -> list[dict[str, Any]]:
    items = k.json("get", "events", "--field-selector", f"involvedObject.name={name},involvedObject.kind={kind}")
    return list(items["items"])


def disk_of(k: Kubectl, root: Path, claim: str) -> Path:
    pv = k("get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}").strip()
    found = list(root.glob(f"**/{pv}/disk.img"))
    assert len(found) == 1, f"disk.img of {claim} ({pv}) not found under {root}"
    return found[0]


def same(disk: Path, source: Path) -> bool:
    return qemu_img.compare(str(disk), str(source), "raw", None)


# --- HTTP(S) sources ------------------------------------------------------------------------------------

def test_http_formats_import_and_fill_the_requested_size(k: Kubectl, server: tuple[VdiskProcess, Path],
                                                         web: Nginx, images: Images) -> None:
    """R8, R13, R23: raw, compressed raw and qcow2/vmdk stream in; a compressed qcow2 takes scratch, says so."""
    _, root = server
    names = {"raw": "disk.raw", "xz": "disk.raw.xz", "zst": "disk.raw.zst", "qcow": "disk.qcow2",
             "vmdk": "disk.vmdk", "qgz": "disk.qcow2.gz"}
    for n, f in names.items():
        k.create(dv(n, http(web.url(f))))
    for n in names:
        obj = wait_phase(k, n, "Succeeded")
        assert obj["status"]["progress"] == "100.0%"
        assert condition(obj, "Ready")["status"] == "True"
        assert condition(obj, "Bound") == {**condition(obj, "Bound"), "status": "True", "reason": "Bound",
                                           "message": f"PVC {n} Bound"}
        disk = disk_of(k, root, n)
        assert same(disk, images.raw)
        # storage API: the disk gets the size asked for, the PVC carries the 5.5% overhead on top (R8, R13)
        assert disk.stat().st_size == 256 * MIB
        request = k("get", "pvc", n, "-o", "jsonpath={.spec.resources.requests.storage}")
        assert int(request) == math.ceil(256 * MIB * 1.055)
        assert allocated(disk) < 24 * MIB  # holes kept: 16 MiB of data in a 256 MiB disk
    reasons = {n: [e["reason"] for e in events(k, n)] for n in names}
    assert "ScratchSpaceRequired" in reasons["qgz"]
    assert all("ScratchSpaceRequired" not in r for n, r in reasons.items() if n != "qgz")
    for n in names:
        assert {"ImportScheduled", "ImportInProgress", "ImportSucceeded", "Bound"} <= set(reasons[n])
    # workers and scratch claims are gone once the imports are done (R41)
    wait_for(lambda: k("get", "pods,pvc", "-o", "name").split() == [f"persistentvolumeclaim/{n}"
                                                                       for n in sorted(names)],
             timeout=20, what="only the target claims left")


def test_https_custom_ca_basic_auth_and_headers(k: Kubectl, server: tuple[VdiskProcess, Path], web: Nginx,
                                                images: Images) -> None:
    """R23: HTTPS with certConfigMap, basic auth with secretRef; a wrong password or a missing CA is explained."""
    _, root = server
    k.run("create", "configmap", "test-ca", f"--from-file=ca.pem={web.ca.cert}")
    k.run("create", "secret", "generic", "good", f"--from-literal=accessKeyId={web.user}",
          f"--from-literal=secretKey={web.password}")
    k.run("create", "secret", "generic", "bad", f"--from-literal=accessKeyId={web.user}",
          "--from-literal=secretKey=wrong")
    k.create(dv("tls", http(web.url("disk.qcow2", "https"), certConfigMap="test-ca")))
    k.create(dv("notls", http(web.url("disk.raw", "https"))))
    k.create(dv("auth", http(web.url("disk.raw.gz", "auth"), secretRef="good",
                             extraHeaders=["X-Trace: vdisk-test"])))
    k.create(dv("noauth", http(web.url("disk.raw", "auth"), secretRef="bad")))
    for n in ("tls", "auth"):
        wait_phase(k, n, "Succeeded")
        assert same(disk_of(k, root, n), images.raw)
    for n, text in (("notls", "certificate"), ("noauth", "expected status code 200, got 401")):
        obj = wait_for(lambda n=n, text=text: dv_when(k, n, lambda o: text in condition(o, "Running")["message"]
                                                      and o["status"].get("restartCount", 0) >= 1),
                       timeout=60, what=f"{n} failing with {text}")
        assert obj["status"]["phase"] != "Succeeded"
        assert any(text in e["message"] and e["type"] == "Warning" for e in events(k, n))


def test_bad_sources_fail_clearly_and_never_succeed(k: Kubectl, web: Nginx, images: Images) -> None:
    """Bad input: each a specific message in Running and an event; fatal ones end Failed (R7)."""
    sha = "sha256:" + "0" * 64
    k.create(dv("missing", http(web.url("nothing-here.img"))))
    k.create(dv("checksum", http(web.url("disk.raw.xz"), checksum=sha)))
    k.create(dv("backing", http(web.url("backed.qcow2"))))
    k.create(dv("toobig", http(web.url("big.qcow2")), size="1Gi"))
    k.create(dv("truncated", http(web.url("truncated.raw.gz"))))
    k.create(dv("corrupt", http(web.url("corrupt.qcow2"))))
    failed = {"checksum": ("ChecksumError", "checksum mismatch"), "backing": ("UnsafeImage", "backing file")}
    for n, (reason, text) in failed.items():
        obj = wait_phase(k, n, "Failed")
        run = condition(obj, "Running")
        assert run["reason"] == reason and text in run["message"]
        assert any(e["type"] == "Warning" and text in e["message"] for e in events(k, n))
    retried = {"missing": "expected status code 200, got 404", "toobig": "DataVolume too small to contain image",
               "truncated": "", "corrupt": ""}
    for n, text in retried.items():
        obj = wait_for(lambda n=n: dv_when(k, n, lambda o: o["status"].get("restartCount", 0) >= 1
                                           and condition(o, "Running")["message"]), timeout=60, what=f"{n} retried")
        assert obj["status"]["phase"] in ("ImportInProgress", "ImportScheduled")
        assert text in condition(obj, "Running")["message"]
        assert condition(obj, "Ready")["status"] == "False"


def test_stalled_server_is_retried_with_restart_count(k: Kubectl) -> None:
    with stalling_server(os.urandom(8 * MIB), stall_after=2 * MIB, ranges=False) as url:
        k.create(dv("stall", http(url)))
        obj = wait_for(lambda: dv_when(k, "stall", lambda o: o["status"].get("restartCount", 0) >= 2 and
                                       "failed at byte" in condition(o, "Running")["message"]),
                       timeout=60, what="stalled import retried twice")
    assert any("failed at byte" in e["message"] for e in events(k, "stall"))
    assert obj["status"]["phase"] != "Succeeded"


def test_progress_is_reported_while_importing(k: Kubectl, web: Nginx) -> None:
    """R7: progress moves from N/A through real percentages to 100.0% (nginx limited to 2 MiB/s)."""
    k.create(dv("slow", http(web.url("disk.raw", "slow")), size="128Mi"))
    seen: set[str] = set()

    def done() -> bool:
        seen.add(k("get", "dv", "slow", "-o", "jsonpath={.status.progress}").strip())
        return phase(k, "slow") == "Succeeded"

    wait_for(done, timeout=120, interval=0.5, what="slow import")
    seen.add(k("get", "dv", "slow", "-o", "jsonpath={.status.progress}").strip())  # as it stays once Succeeded
    partial = [p for p in seen if p.endswith("%") and p != "100.0%"]
    assert partial, seen
    assert all(0 <= float(p.rstrip("%")) < 100 for p in partial)
    assert "100.0%" in seen


def test_archive_content_is_unpacked(k: Kubectl, server: tuple[VdiskProcess, Path], web: Nginx) -> None:
    _, root = server
    k.create(dv("arch", http(web.url("archive.tar")), contentType="archive"))
    wait_phase(k, "arch", "Succeeded")
    pv = k("get", "pvc", "arch", "-o", "jsonpath={.spec.volumeName}").strip()
    hello = list(root.glob(f"**/{pv}/hello.txt"))
    assert hello and hello[0].read_text() == "hello from an archive\n"


def test_block_volume_import(k: Kubectl, server: tuple[VdiskProcess, Path], web: Nginx, images: Images) -> None:
    """A Block DataVolume on local-block gets the image on the device itself (volumeMode Block)."""
    k.create(dv("blk", http(web.url("disk.qcow2")), size="128Mi", **{}) | {
        "spec": {"source": http(web.url("disk.qcow2")),
                 "storage": {"storageClassName": "local-block", "resources": {"requests": {"storage": "128Mi"}}}}})
    wait_phase(k, "blk", "Succeeded")
    assert k("get", "pvc", "blk", "-o", "jsonpath={.spec.volumeMode}") == "Block"
    # no overhead on Block: the request is what was asked
    assert k("get", "pvc", "blk", "-o", "jsonpath={.spec.resources.requests.storage}") == "128Mi"
    pv = k.json("get", "pv", k("get", "pvc", "blk", "-o", "jsonpath={.spec.volumeName}").strip())
    _, root = server
    device = (root / pv["spec"]["local"]["path"].lstrip("/")).resolve()
    out = subprocess.run(["cmp", "-n", str(images.size), str(device), str(images.raw)], capture_output=True)
    assert out.returncode == 0, out.stdout


# --- registry -------------------------------------------------------------------------------------------

def test_registry_container_disks(k: Kubectl, server: tuple[VdiskProcess, Path], web: Nginx, images: Images,
                                  secure_registry: Registry, insecure_registry: Registry) -> None:
    """R39, R40: container disks (raw and qcow2 under /disk/) from a TLS+htpasswd registry and an insecure one."""
    _, root = server
    push_container_disk(secure_registry, "vdisk/raw", "v1", [disk_layer(images.raw)])
    push_container_disk(secure_registry, "vdisk/qcow", "v1", [disk_layer(images.dir / "disk.qcow2")])
    push_container_disk(secure_registry, "vdisk/nodisk", "v1", [disk_layer(None, extra={"etc/motd": b"hi\n"})])
    push_container_disk(insecure_registry, "vdisk/plain", "v1", [disk_layer(images.raw)])
    k.run("create", "configmap", "reg-ca", f"--from-file=ca.crt={web.ca.cert}")
    k.run("create", "secret", "generic", "reg-creds", "--from-literal=accessKeyId=puller",
          "--from-literal=secretKey=pull-pass")

    def reg(url: str, **extra: Any) -> dict[str, Any]:
        return {"registry": {"url": url, **extra}}

    host = secure_registry.host
    k.create(dv("craw", reg(f"docker://{host}/vdisk/raw:v1", secretRef="reg-creds", certConfigMap="reg-ca")))
    k.create(dv("cqcow", reg(f"docker://{host}/vdisk/qcow:v1", secretRef="reg-creds", certConfigMap="reg-ca")))
    k.create(dv("cnone", reg(f"docker://{host}/vdisk/nodisk:v1", secretRef="reg-creds", certConfigMap="reg-ca")))
    for n in ("craw", "cqcow"):
        wait_phase(k, n, "Succeeded")
        assert same(disk_of(k, root, n), images.raw)
    assert "ScratchSpaceRequired" in [e["reason"] for e in events(k, "cqcow")]
    assert "ScratchSpaceRequired" not in [e["reason"] for e in events(k, "craw")]
    obj = wait_for(lambda: dv_when(k, "cnone", lambda o: "Failed to find VM disk image file" in
                                   condition(o, "Running")["message"]), timeout=60, what="no disk in image")
    assert obj["status"]["phase"] != "Succeeded"
    # the insecure registry: refused until HCO lists it (example 22, then our registry added)
    plain = f"docker://{insecure_registry.host}/vdisk/plain:v1"
    k.run("apply", "-f", str(EXAMPLES / "22-hco-insecureregistries.yaml"), namespace=None)
    k.run("patch", "hco", "-n", "openshift-cnv", "kubevirt-hyperconverged", "--type", "json", "-p",
          json.dumps([{"op": "add", "path": "/spec/storageImport/insecureRegistries/-",
                       "value": insecure_registry.host}]), namespace=None)
    wait_for(lambda: insecure_registry.host in k("get", "cdiconfig", "config", "-o",
                                                 "jsonpath={.spec.insecureRegistries}", namespace=None),
             timeout=20, what="insecure registry in CDIConfig")
    k.create(dv("cplain", reg(plain)))
    wait_phase(k, "cplain", "Succeeded")
    assert same(disk_of(k, root, "cplain"), images.raw)


# --- blank, preallocation, overhead, profiles ------------------------------------------------------------

def test_blank_and_preallocated_examples(k: Kubectl, server: tuple[VdiskProcess, Path]) -> None:
    """R35 (example 19, on a `hostpath` class) and R17 (example 12): sizes and allocation on disk."""
    _, root = server
    k.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "hostpath"},
             "provisioner": "kubevirt.io.hostpath-provisioner", "parameters": {"storagePool": "local"},
             "volumeBindingMode": "Immediate"})
    k.run("create", "-f", str(EXAMPLES / "19-dv-blank.yaml"))
    k.run("create", "-f", str(EXAMPLES / "12-dv-preallocation.yaml"))
    wait_phase(k, "blank-image-datavolume", "Succeeded")
    wait_phase(k, "preallocated-datavolume", "Succeeded")
    blank = disk_of(k, root, "blank-image-datavolume")
    pre = disk_of(k, root, "preallocated-datavolume")
    # pvc API: no overhead added to the claim; the disk is the usable part (RoundDown(ceil(500Mi/1.055), 1MiB))
    assert blank.stat().st_size == (math.ceil(500 * MIB / 1.055) // MIB) * MIB
    assert allocated(blank) == 0
    assert allocated(pre) >= pre.stat().st_size
    ann = k.json("get", "pvc", "preallocated-datavolume")["metadata"]["annotations"]
    assert ann["cdi.kubevirt.io/storage.preallocation.requested"] == "true"
    assert ann["cdi.kubevirt.io/storage.preallocation"] == "true"
    assert any(e["reason"] == "PreallocationApplied" for e in events(k, "preallocated-datavolume"))


def test_overhead_from_hco_and_storage_profiles(k: Kubectl, server: tuple[VdiskProcess, Path], web: Nginx) -> None:
    """R11-R14: profile per class; unknown provisioner -> ErrClaimNotValid, no PVC; edits show in status."""
    _, root = server
    assert k.json("get", "storageprofile", "local", namespace=None)["status"]["claimPropertySets"] == [
        {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]
    assert k.json("get", "storageprofile", "local-block", namespace=None)["status"]["claimPropertySets"] == [
        {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"}]
    sc = f"unknown-{k.namespace}"
    k.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": sc},
             "provisioner": "example.com/unknown"})
    wait_for(lambda: k.run("get", "storageprofile", sc, namespace=None, check=False).returncode == 0, timeout=10)
    assert "claimPropertySets" not in k.json("get", "storageprofile", sc, namespace=None).get("status", {})
    spec = dv("noprofile", {"blank": {}}, size="64Mi")
    spec["spec"]["storage"]["storageClassName"] = sc
    k.create(spec)
    obj = wait_for(lambda: dv_when(k, "noprofile", lambda o: True), timeout=20)
    bound = condition(obj, "Bound")
    assert (bound["status"], bound["reason"]) == ("False", "ErrClaimNotValid")
    assert f"no accessMode specified in StorageProfile {sc}" in bound["message"]
    assert k.run("get", "pvc", "noprofile", check=False).returncode != 0
    assert any(e["reason"] == "ErrClaimNotValid" and e["type"] == "Warning" for e in events(k, "noprofile"))
    # example 07's edit, on this class: the PVC appears with the modes from the profile
    k.run("patch", "storageprofile", sc, "--type", "merge", "-p", json.dumps(
        {"spec": {"claimPropertySets": [{"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]}}),
        namespace=None)
    wait_for(lambda: k.run("get", "pvc", "noprofile", check=False).returncode == 0, timeout=20, what="pvc rendered")
    assert k.json("get", "pvc", "noprofile")["spec"]["accessModes"] == ["ReadWriteOnce"]
    k.run("delete", "sc", sc, namespace=None)
    # example 09: HCO's overhead flows to CDIConfig and into the next claim's size
    patch = (EXAMPLES / "09-hco-filesystemoverhead.patch.yaml").read_text()
    k.run("patch", "hco", "-n", "openshift-cnv", "kubevirt-hyperconverged", "--type", "merge", "--patch-file",
          str(EXAMPLES / "09-hco-filesystemoverhead.patch.yaml"), namespace=None)
    assert "0.07" in patch
    try:
        wait_for(lambda: k("get", "cdiconfig", "-o", "jsonpath={.items..status.filesystemOverhead.global}",
                           namespace=None) == "0.07", timeout=20)
        k.create(dv("ovh", {"blank": {}}, size="1Gi"))
        wait_phase(k, "ovh", "Succeeded")
        assert int(k("get", "pvc", "ovh", "-o", "jsonpath={.spec.resources.requests.storage}")) == \
            math.ceil(GIB * 1.07)
        assert disk_of(k, root, "ovh").stat().st_size == GIB
    finally:
        k.run("patch", "hco", "-n", "openshift-cnv", "kubevirt-hyperconverged", "--type", "json", "-p",
              '[{"op": "remove", "path": "/spec/filesystemOverhead"}]', namespace=None, check=False)


def test_clone_strategy_example(k: Kubectl) -> None:
    """R12, example 08: the profile of hostpath-csi with cloneStrategy csi-clone."""
    k.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "hostpath-csi"},
             "provisioner": "kubevirt.io.hostpath-provisioner", "parameters": {"storagePool": "local"},
             "volumeBindingMode": "WaitForFirstConsumer"})
    wait_for(lambda: k.run("get", "storageprofile", "hostpath-csi", namespace=None, check=False).returncode == 0,
             timeout=10)
    assert k.json("get", "storageprofile", "hostpath-csi", namespace=None)["status"]["cloneStrategy"] == "copy"
    k.run("apply", "-f", str(EXAMPLES / "08-storageprofile-clonestrategy.yaml"), namespace=None)
    wait_for(lambda: k.json("get", "storageprofile", "hostpath-csi", namespace=None)["status"].get("cloneStrategy")
             == "csi-clone", timeout=10, what="csi-clone in status")


def test_wait_for_first_consumer(k: Kubectl, web: Nginx) -> None:
    """A WFFC class: the DV waits for a consumer, unless immediate binding is requested."""
    k.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "hostpath-csi"},
             "provisioner": "kubevirt.io.hostpath-provisioner", "parameters": {"storagePool": "local"},
             "volumeBindingMode": "WaitForFirstConsumer"})
    wait_for(lambda: k.run("get", "storageprofile", "hostpath-csi", namespace=None, check=False).returncode == 0,
             timeout=10)
    for n, ann in (("wffc", {}), ("immediate", {"cdi.kubevirt.io/storage.bind.immediate.requested": "true"})):
        obj = dv(n, http(web.url("disk.raw.xz")), size="128Mi")
        obj["spec"]["storage"]["storageClassName"] = "hostpath-csi"
        obj["metadata"]["annotations"] = ann
        k.create(obj)
    wait_phase(k, "immediate", "Succeeded")
    wait_phase(k, "wffc", "WaitForFirstConsumer", timeout=10)
    assert k("get", "pvc", "wffc", "-o", "jsonpath={.status.phase}") == "Pending"
    # a consumer arrives: the claim binds on its node, the import runs, the DV succeeds
    k.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "consumer"},
              "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}],
                       "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "wffc"}}]}})
    wait_phase(k, "wffc", "Succeeded")


def test_annotations_propagate_to_the_importer_pod(k: Kubectl, web: Nginx) -> None:
    """R16 (example 11 with a working URL): DV annotations reach the importer pod."""
    text = (EXAMPLES / "11-dv-annotation.yaml").read_text().replace('"example.exampleurl.com"',
                                                                    f'"{web.url("disk.raw")}"')
    assert web.url("disk.raw") in text
    k.create(text.replace("  name: dv-ann\n  annotations:\n",
                          "  name: dv-ann\n  annotations:\n      cdi.kubevirt.io/storage.pod.retainAfterCompletion: "
                          "\"true\"\n"))
    prio = dv("prio", {"blank": {}}, size="64Mi", priorityClassName="vdisk-test-high")
    prio["metadata"]["annotations"] = {"cdi.kubevirt.io/storage.pod.retainAfterCompletion": "true",
                                       "k8s.v1.cni.cncf.io/networks": "storage-net"}
    k.create(prio)
    wait_phase(k, "dv-ann", "Succeeded")
    pod = k.json("get", "pod", "importer-dv-ann")
    assert pod["metadata"]["annotations"]["v1.multus-cni.io/default-network"] == "bridge-network"
    assert pod["metadata"]["labels"]["app"] == "containerized-data-importer"
    assert pod["spec"]["restartPolicy"] == "OnFailure"
    wait_phase(k, "prio", "Succeeded")
    pod = k.json("get", "pod", "importer-prio")
    assert pod["spec"]["priorityClassName"] == "vdisk-test-high"
    assert pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == "storage-net"


def test_worker_resources_and_quota(k: Kubectl, web: Nginx) -> None:
    """R15: under a CPU/memory quota the worker is refused until HCO gives it requests and limits (example 10)."""
    k.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
             "spec": {"hard": {"requests.cpu": "2", "requests.memory": "4Gi", "limits.cpu": "2",
                               "limits.memory": "4Gi"}}})
    k.create(dv("quota", http(web.url("disk.raw.zst")), size="128Mi"))
    obj = wait_for(lambda: dv_when(k, "quota", lambda o: "quota" in condition(o, "Running")["message"]),
                   timeout=30, what="quota refusal on DV")
    assert condition(obj, "Running")["reason"] == "ErrExceededQuota"
    k.run("apply", "-f", str(EXAMPLES / "10-hco-storageworkloads.yaml"), "-n", "openshift-cnv", namespace=None)
    try:
        wait_phase(k, "quota", "Succeeded", timeout=60)
    finally:
        k.run("patch", "hco", "-n", "openshift-cnv", "kubevirt-hyperconverged", "--type", "json", "-p",
              '[{"op": "remove", "path": "/spec/resourceRequirements"}]', namespace=None, check=False)


def test_deleting_the_dv_deletes_its_pvc(k: Kubectl) -> None:
    k.create(dv("gone", {"blank": {}}, size="64Mi"))
    wait_phase(k, "gone", "Succeeded")
    k.run("delete", "dv", "gone")
    wait_for(lambda: k.run("get", "pvc", "gone", check=False).returncode != 0, timeout=30, what="pvc deleted")
