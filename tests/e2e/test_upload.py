"""Uploads end to end: `virtctl image-upload` from a shell, the upload proxy on node00, targets on both nodes.

R18-R20, R22, R23 (upload column): formats x compression into Filesystem and Block targets (qemu-img
compare), --no-create into example 13, the loop-device PV of example 14 on node01, an upload cut by
the network and resumed, --insecure, WaitForFirstConsumer, and the refusals (tokens, sizes, bad files).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Kubectl, wait_for
from tests.e2e.conftest import Cluster, example14_loop_device
from tests.servers import MIB, Images, cutting_relay, write_pattern
from vdisk.apiserver.uploadtoken import TokenSigner
from vdisk.dataplane import qemu_img

EXAMPLES = ROOT / "tests" / "data" / "examples"
GIB = 1024 * MIB


@pytest.fixture
def k(cluster: Cluster) -> Any:
    kc = cluster.kubectl()
    ns = "up-" + os.urandom(3).hex()
    kc("create", "namespace", ns)
    kc.namespace = ns
    yield kc
    kc.run("delete", "namespace", ns, "--wait=false", namespace=None, check=False)


def virtctl(cluster: Cluster, k: Kubectl, args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """virtctl as a user runs it: from a shell, with KUBECONFIG set."""
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
           "KUBECONFIG": str(cluster.server.kubeconfig)}
    return subprocess.run(f"virtctl image-upload {args} -n {k.namespace}", shell=True, capture_output=True,
                          text=True, env=env, timeout=timeout)


def disk_of(cluster: Cluster, k: Kubectl, claim: str) -> Path:
    pv = k.json("get", "pv", k("get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}").strip(), namespace=None)
    if "local" in pv["spec"]:  # a Block volume: the device behind the node's path
        node = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
        return cluster.host_path(node, pv["spec"]["local"]["path"]).resolve()
    for root in cluster.roots.values():
        found = list(root.glob(f"**/{pv['metadata']['name']}/disk.img"))
        if found:
            return found[0]
    raise AssertionError(f"no disk for {claim}")


def same_prefix(device: Path, image: Path, size: int) -> bool:
    return subprocess.run(["cmp", "-n", str(size), str(device), str(image)], capture_output=True).returncode == 0


def succeeded(k: Kubectl, name: str) -> bool:
    return k("get", "dv", name, "-o", "jsonpath={.status.phase}") == "Succeeded"


@pytest.mark.parametrize("fmt", ["disk.raw", "disk.raw.gz", "disk.raw.xz", "disk.raw.zst", "disk.qcow2",
                                 "disk.qcow2.gz", "disk.qcow2.xz", "disk.vmdk"])
def test_upload_each_format_into_a_filesystem_volume(cluster: Cluster, k: Kubectl, images: Images,
                                                     fmt: str) -> None:
    name = "up-" + fmt.replace(".", "-")
    res = virtctl(cluster, k, f"dv {name} --size=256Mi --image-path={images.dir / fmt}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Processing completed successfully" in res.stdout
    assert succeeded(k, name)
    disk = disk_of(cluster, k, name)
    assert qemu_img.compare(str(disk), str(images.raw), "raw", None)
    assert disk.stat().st_size == 256 * MIB  # the storage API gives the disk the size asked for
    assert f"{name}" in k("get", "dvs") and "Succeeded" in k("get", "dvs")
    # the upload server and its scratch claim are gone
    wait_for(lambda: not k("get", "pods", "-o", "name").strip(), timeout=20, what="upload pod gone")
    assert k("get", "pvc", "-o", "name").split() == [f"persistentvolumeclaim/{name}"]


@pytest.mark.parametrize("fmt", ["disk.raw", "disk.raw.xz", "disk.qcow2"])
def test_upload_into_a_block_volume(cluster: Cluster, k: Kubectl, images: Images, fmt: str) -> None:
    name = "blk-" + fmt.replace(".", "-")
    res = virtctl(cluster, k, f"dv {name} --size=128Mi --volume-mode=block --storage-class=local-block "
                              f"--image-path={images.dir / fmt}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert k("get", "pvc", name, "-o", "jsonpath={.spec.volumeMode}") == "Block"
    assert same_prefix(disk_of(cluster, k, name), images.raw, images.size)


def test_pvc_target_and_no_create_into_example_13(cluster: Cluster, k: Kubectl, images: Images) -> None:
    res = virtctl(cluster, k, f"pvc plain --size=128Mi --image-path={images.dir / 'disk.qcow2'}")
    assert res.returncode == 0, res.stdout + res.stderr
    ann = k.json("get", "pvc", "plain")["metadata"]["annotations"]
    assert "cdi.kubevirt.io/storage.upload.target" in ann and ann["cdi.kubevirt.io/storage.pod.phase"] == "Succeeded"
    k("create", "-f", str(EXAMPLES / "13-dv-upload.yaml"))
    wait_for(lambda: k("get", "dv", "upload-datavolume", "-o", "jsonpath={.status.phase}") == "UploadReady",
             timeout=30, what="example 13 UploadReady")
    res = virtctl(cluster, k, f"dv upload-datavolume --no-create --image-path={images.dir / 'disk.raw.gz'}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert succeeded(k, "upload-datavolume")
    assert qemu_img.compare(str(disk_of(cluster, k, "upload-datavolume")), str(images.raw), "raw", None)
    again = virtctl(cluster, k, f"dv upload-datavolume --no-create --image-path={images.dir / 'disk.raw'}")
    assert again.returncode != 0 and "already successfully imported" in again.stderr


def test_loop_device_pv_on_node01_through_the_proxy_on_node00(cluster: Cluster, k: Kubectl,
                                                              images: Images) -> None:
    """R22, example 14: the upload server runs on node01, the proxy is node00's API server."""
    with example14_loop_device(cluster) as dev:
        try:
            k.run("delete", "pv", "local-block-pv10", "--ignore-not-found", namespace=None, check=False)
            k("create", "-f", str(EXAMPLES / "14-local-block-pv.yaml"), namespace=None)
            k.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "iso"},
                      "spec": {"source": {"upload": {}},
                               "pvc": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block",
                                       "storageClassName": "local", "resources": {"requests": {"storage": "2Gi"}}}}})
            res = virtctl(cluster, k, f"dv iso --no-create --image-path={images.dir / 'disk.qcow2'}")
            assert res.returncode == 0, res.stdout + res.stderr
            assert k("get", "pvc", "iso", "-o", "jsonpath={.spec.volumeName}") == "local-block-pv10"
            assert same_prefix(dev, images.raw, images.size)
            events = k("get", "events", "-o", "json")
            assert "cdi-upload-iso" in events and "node01" in events  # the upload server ran on node01
        finally:
            k.run("delete", "dv", "iso", "--ignore-not-found", "--wait=true", check=False)
            k.run("delete", "pv", "local-block-pv10", "--ignore-not-found", "--wait=false", namespace=None,
                  check=False)


def test_a_cut_upload_resumes_where_it_stopped(cluster: Cluster, k: Kubectl, tmp_path: Path) -> None:
    """The network drops the upload at ~300 MiB of 1 GiB: the next run continues from there."""
    image = tmp_path / "big.raw"  # 8 data extents of 100 MiB: sent as one stream of extents
    write_pattern(image, GIB, [(i * 128 * MIB, 100 * MIB) for i in range(8)], seed=3)
    port = int(cluster.server.url.rsplit(":", 1)[1])
    with cutting_relay(port, cut_after=300 * MIB) as relay:
        first = virtctl(cluster, k, f"dv big --size=1Gi --image-path={image} --insecure --retry=0 "
                                    f"--uploadproxy-url={relay.url}")
        assert first.returncode != 0, first.stdout
        assert "error uploading image" in first.stderr
        assert k("get", "dv", "big", "-o", "jsonpath={.status.phase}") == "UploadReady"  # not Succeeded
        cut_bytes = relay.forwarded
    second = virtctl(cluster, k, f"dv big --no-create --image-path={image}")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Resumed an interrupted upload" in second.stdout
    resumed = int(re.search(r"Resumed an interrupted upload at byte (\d+)", second.stdout).group(1))  # type: ignore
    sent = int(re.search(r"Sent (\d+) bytes", second.stdout).group(1))  # type: ignore[union-attr]
    assert resumed >= 200 * MIB
    assert cut_bytes + sent < 1.3 * 800 * MIB  # well below twice the data
    assert succeeded(k, "big")
    assert same_prefix(disk_of(cluster, k, "big"), image, GIB)


def test_a_cut_connection_is_retried_within_one_run(cluster: Cluster, k: Kubectl, tmp_path: Path) -> None:
    image = tmp_path / "mid.raw"
    write_pattern(image, 256 * MIB, [(0, 200 * MIB)], seed=4)
    port = int(cluster.server.url.rsplit(":", 1)[1])
    with cutting_relay(port, cut_after=100 * MIB) as relay:
        res = virtctl(cluster, k, f"dv mid --size=256Mi --image-path={image} --insecure "
                                  f"--uploadproxy-url={relay.url}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert relay.forwarded < 1.6 * 256 * MIB
    assert same_prefix(disk_of(cluster, k, "mid"), image, 256 * MIB)


def test_insecure_is_needed_for_an_untrusted_proxy_certificate(cluster: Cluster, k: Kubectl, images: Images) -> None:
    url = cluster.server.url.replace("127.0.0.1", "localhost")  # not the kubeconfig's server: its CA is not used
    res = virtctl(cluster, k, f"dv tls --size=128Mi --image-path={images.dir / 'disk.raw'} --uploadproxy-url={url} "
                              "--retry=0")
    assert res.returncode != 0 and "certificate" in res.stderr.lower()
    res = virtctl(cluster, k, f"dv tls --no-create --image-path={images.dir / 'disk.raw'} --uploadproxy-url={url} "
                              "--insecure")
    assert res.returncode == 0, res.stdout + res.stderr


def test_wait_for_first_consumer_needs_force_bind(cluster: Cluster, k: Kubectl, images: Images) -> None:
    k.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "wffc-upload"},
             "provisioner": "kubevirt.io.hostpath-provisioner", "parameters": {"storagePool": "local"},
             "volumeBindingMode": "WaitForFirstConsumer"})
    t0 = time.monotonic()
    res = virtctl(cluster, k, f"dv w1 --size=128Mi --storage-class=wffc-upload --image-path={images.dir / 'disk.raw'}")
    assert res.returncode != 0 and time.monotonic() - t0 < 60
    assert "cannot upload to DataVolume in WaitForFirstConsumer phase" in res.stderr and "force-bind" in res.stderr
    wait_for(lambda: k.run("get", "dv", "w1", check=False).returncode != 0, timeout=10, what="w1 not left behind")
    res = virtctl(cluster, k, f"dv w2 --size=128Mi --storage-class=wffc-upload --force-bind "
                              f"--image-path={images.dir / 'disk.raw'}")
    assert res.returncode == 0, res.stdout + res.stderr


def test_client_side_errors_leave_nothing_behind(cluster: Cluster, k: Kubectl, images: Images) -> None:
    cases = [(f"dv e1 --size=1Gi --image-path={images.dir / 'nope.img'}", "no such file"),
             (f"dv e2 --size=lots --image-path={images.dir / 'disk.raw'}", "validation failed for size=lots"),
             (f"dv e3 --image-path={images.dir / 'disk.raw'}", "the size must be specified"),
             ("dv e4 --size=1Gi", "either image-path or archive-path must be provided"),
             (f"vm e5 --size=1Gi --image-path={images.dir / 'disk.raw'}", "invalid resource type vm")]
    for args, text in cases:
        res = virtctl(cluster, k, args)
        assert res.returncode != 0 and text in res.stderr, (args, res.stderr)
    assert k("get", "dv", "-o", "name").strip() == ""


def test_server_side_refusals(cluster: Cluster, k: Kubectl, images: Images) -> None:
    """Too large, corrupt images, an import DV, tokens: each refused with a message, nothing Succeeded."""
    res = virtctl(cluster, k, f"dv small --size=32Mi --image-path={images.dir / 'disk.raw'} --retry=0")
    assert res.returncode != 0 and "larger than the reported available storage" in res.stderr
    res = virtctl(cluster, k, f"dv bad --size=128Mi --image-path={images.dir / 'corrupt.qcow2'} --retry=0")
    assert res.returncode != 0 and "Saving stream failed" in res.stderr
    res = virtctl(cluster, k, f"dv trunc --size=128Mi --image-path={images.dir / 'truncated.raw.gz'} --retry=0")
    assert res.returncode != 0 and "gzip" in res.stderr
    for n in ("small", "bad", "trunc"):
        assert not succeeded(k, n)
    k.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "blankdv"},
              "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "64Mi"}}}}})
    res = virtctl(cluster, k, f"dv blankdv --no-create --image-path={images.dir / 'disk.raw'}")
    assert res.returncode != 0 and "not an upload DataVolume" in res.stderr
    # tokens, straight at the proxy
    base = cluster.server.url
    with httpx.Client(verify=False, timeout=30) as c:
        assert c.post(f"{base}/v1beta1/upload", content=b"x").status_code == 400
        assert c.post(f"{base}/v1beta1/upload", content=b"x", headers={"Authorization": "Bearer abc.def.ghi"}
                      ).status_code == 401
        signer = TokenSigner(cluster.server.data_dir / "pki" / "upload-token.key")
        expired = signer.issue(k.namespace or "", "small", now=time.time() - 3600)
        r = c.post(f"{base}/v1beta1/upload", content=b"x", headers={"Authorization": f"Bearer {expired}"})
        assert r.status_code == 401 and "expired" in r.text
        other = signer.issue(k.namespace or "", "blankdv")  # a PVC that is not an upload target
        r = c.post(f"{base}/v1beta1/upload", content=b"x", headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 503 and "not an upload target" in r.text


def test_a_second_concurrent_upload_is_refused(cluster: Cluster, k: Kubectl, images: Images) -> None:
    k.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "one"},
              "spec": {"source": {"upload": {}}, "storage": {"resources": {"requests": {"storage": "128Mi"}}}}})
    wait_for(lambda: k("get", "dv", "one", "-o", "jsonpath={.status.phase}") == "UploadReady", timeout=30)
    token = k.json("create", "-f", "-", input=json.dumps({
        "apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
        "metadata": {"name": "t"}, "spec": {"pvcName": "one"}}))["status"]["token"]
    data = (images.dir / "disk.raw").read_bytes()
    headers = {"Authorization": f"Bearer {token}"}
    started = threading.Event()

    def slow_body() -> Any:
        for i in range(0, len(data), 4 * MIB):
            yield data[i:i + 4 * MIB]
            started.set()
            time.sleep(0.15)

    results: dict[str, int] = {}

    def first() -> None:
        with httpx.Client(verify=False, timeout=60) as c:
            results["first"] = c.post(f"{cluster.server.url}/v1beta1/upload", content=slow_body(),
                                      headers=headers).status_code

    t = threading.Thread(target=first)
    t.start()
    started.wait(10)
    time.sleep(0.3)
    with httpx.Client(verify=False, timeout=60) as c:
        second = c.post(f"{cluster.server.url}/v1beta1/upload", content=data, headers=headers)
    t.join(60)
    assert second.status_code == 503 and "in progress" in second.text
    assert results["first"] == 200
    wait_for(lambda: succeeded(k, "one"), timeout=30, what="the first upload succeeded")
    assert qemu_img.compare(str(disk_of(cluster, k, "one")), str(images.raw), "raw", None)



def test_archive_upload_and_cdi_form_upload(cluster: Cluster, k: Kubectl, images: Images) -> None:
    """--archive-path unpacks a tar into the volume; CDI's multipart /upload-form works through the proxy."""
    res = virtctl(cluster, k, f"dv arch --size=64Mi --archive-path={images.dir / 'archive.tar'}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert k("get", "dv", "arch", "-o", "jsonpath={.spec.contentType}") == "archive"
    pv = k("get", "pvc", "arch", "-o", "jsonpath={.spec.volumeName}").strip()
    hello = [p for root in cluster.roots.values() for p in root.glob(f"**/{pv}/hello.txt")]
    assert hello and hello[0].read_text() == "hello from an archive\n"
    k.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "form"},
              "spec": {"source": {"upload": {}}, "storage": {"resources": {"requests": {"storage": "128Mi"}}}}})
    wait_for(lambda: k("get", "dv", "form", "-o", "jsonpath={.status.phase}") == "UploadReady", timeout=30)
    token = k.json("create", "-f", "-", input=json.dumps({
        "apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
        "metadata": {"name": "f"}, "spec": {"pvcName": "form"}}))["status"]["token"]
    curl = subprocess.run(["curl", "-sS", "-k", "-H", f"Authorization: Bearer {token}", "-F", "note=hello",
                           "-F", f"file=@{images.dir / 'disk.qcow2'}", f"{cluster.server.url}/v1beta1/upload-form"],
                          capture_output=True, text=True, timeout=60)
    assert curl.returncode == 0 and '"done": true' in curl.stdout, curl.stdout + curl.stderr
    wait_for(lambda: succeeded(k, "form"), timeout=30, what="form upload Succeeded")
    assert qemu_img.compare(str(disk_of(cluster, k, "form")), str(images.raw), "raw", None)


def test_virtctl_as_upstream_scripts_call_it(cluster: Cluster, k: Kubectl, images: Images) -> None:
    """Global flags before the command, --datasource and the default-instancetype labels, an existing
    upload PVC reused without --no-create, a PVC rendered from the StorageProfile, HEAD on upload-async."""
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}", "KUBECONFIG": str(cluster.server.kubeconfig)}

    def sh(cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env, timeout=180)

    res = sh(f"virtctl -n {k.namespace} image-upload dv labelled --size=128Mi --image-path={images.dir / 'disk.raw'}"
             " --datasource --default-instancetype=u1.small --default-preference=fedora")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"DataSource {k.namespace}/labelled created" in res.stdout
    want = {"instancetype.kubevirt.io/default-instancetype": "u1.small",
            "instancetype.kubevirt.io/default-preference": "fedora"}
    for kind in ("dv", "pvc", "datasource"):
        labels = k.json("get", kind, "labelled")["metadata"]["labels"]
        assert want.items() <= labels.items(), (kind, labels)
    assert k.json("get", "datasource", "labelled")["spec"]["source"] == {
        "pvc": {"name": "labelled", "namespace": k.namespace}}
    res = sh(f"virtctl image-upload dv x -n {k.namespace} --size=1Gi --image-path={images.dir / 'disk.raw'} "
             "--default-instancetype-kind=VirtualMachineClusterInstancetype")
    assert res.returncode == 1 and "--default-instancetype must be provided" in res.stderr

    # a claim for the Block class, no --volume-mode: the StorageProfile says Block
    res = virtctl(cluster, k, f"pvc blockish --size=128Mi --storage-class=local-block "
                              f"--image-path={images.dir / 'disk.qcow2'}")
    assert res.returncode == 0, res.stdout + res.stderr
    spec = k.json("get", "pvc", "blockish")["spec"]
    assert spec["volumeMode"] == "Block" and spec["accessModes"] == ["ReadWriteOnce"]
    # a Filesystem claim gets the 5.5% overhead, as a DataVolume's would
    k.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
              "metadata": {"name": "waiting", "labels": {"cdi.kubevirt.io/applyStorageProfile": "true"},
                           "annotations": {"cdi.kubevirt.io/storage.upload.target": ""}},
              "spec": {"volumeMode": "FromStorageProfile", "resources": {"requests": {"storage": "1Gi"}}}})
    spec = k.json("get", "pvc", "waiting")["spec"]
    assert spec["volumeMode"] == "Filesystem" and spec["resources"]["requests"]["storage"] == str(math.ceil(GIB * 1.055))
    wait_for(lambda: k("get", "pvc", "waiting", "-o",
                       "jsonpath={.metadata.annotations.cdi\\.kubevirt\\.io/storage\\.pod\\.ready}") == "true",
             timeout=30, what="upload pod ready")
    token = k.json("create", "-f", "-", input=json.dumps({
        "apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
        "metadata": {"name": "h"}, "spec": {"pvcName": "waiting"}}))["status"]["token"]
    head = subprocess.run(["curl", "-sS", "-k", "-I", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                           f"Authorization: Bearer {token}", f"{cluster.server.url}/v1beta1/upload-async"],
                          capture_output=True, text=True, timeout=30)
    assert head.stdout == "200", head.stderr  # upstream virtctl's test for the async API
    res = virtctl(cluster, k, f"pvc waiting --size=1Gi --image-path={images.dir / 'disk.raw.xz'}")
    assert res.returncode == 0 and f"Using existing PVC {k.namespace}/waiting" in res.stdout, res.stdout + res.stderr
    assert qemu_img.compare(str(disk_of(cluster, k, "waiting")), str(images.raw), "raw", None)


def test_an_unreachable_api_server_is_one_line(tmp_path: Path, images: Images) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                               "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                                      "insecure-skip-tls-verify": True}}],
                               "users": [{"name": "u", "user": {"token": "t"}}],
                               "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    bindir = Path(sys.executable).parent
    res = subprocess.run(f"virtctl image-upload dv x --size=1Gi --image-path={images.dir / 'disk.raw'}",
                         shell=True, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}", "KUBECONFIG": str(cfg)})
    assert res.returncode == 1 and "cannot reach the API server" in res.stderr and "Traceback" not in res.stderr


def test_long_names_and_a_scratch_claim_refused_then_allowed(cluster: Cluster, k: Kubectl, images: Images) -> None:
    """A 60-character DV name still gets its upload pod (names cut to 63 with a hash, as CDI's); a scratch
    claim refused by a quota is retried until the quota allows it, and the upload then goes through."""
    long_name = "a-rather-long-datavolume-name-for-a-disk-" + "x" * 19
    k.create({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "claims"},
              "spec": {"hard": {"persistentvolumeclaims": "1"}}})
    k.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": long_name},
              "spec": {"source": {"upload": {}}, "storage": {"resources": {"requests": {"storage": "128Mi"}}}}})
    wait_for(lambda: "exceeded quota" in k("get", "pvc", long_name, "-o", "jsonpath={.metadata.annotations}"),
             timeout=30, what="the scratch claim refused by the quota")
    assert k("get", "dv", long_name, "-o", "jsonpath={.status.phase}") != "UploadReady"
    k("patch", "resourcequota", "claims", "--type=merge", "-p", '{"spec":{"hard":{"persistentvolumeclaims":"2"}}}')
    wait_for(lambda: k("get", "dv", long_name, "-o", "jsonpath={.status.phase}") == "UploadReady",
             timeout=30, what="UploadReady once the quota allows scratch")
    pods = k("get", "pods", "-o", "name").split()
    assert all(len(p.split("/", 1)[1]) <= 63 for p in pods) and pods, pods
    res = virtctl(cluster, k, f"dv {long_name} --no-create --image-path={images.dir / 'disk.qcow2'}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert qemu_img.compare(str(disk_of(cluster, k, long_name)), str(images.raw), "raw", None)


def test_preallocated_block_upload(cluster: Cluster, k: Kubectl, images: Images) -> None:
    """R17 + R22: an upload into a preallocated Block DV: the sparse upload's holes read as zeros, the device's
    backing file is fully allocated and the claim says preallocation was applied."""
    k.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "pre"},
              "spec": {"source": {"upload": {}}, "preallocation": True,
                       "storage": {"storageClassName": "local-block", "volumeMode": "Block",
                                   "resources": {"requests": {"storage": "128Mi"}}}}})
    wait_for(lambda: k("get", "dv", "pre", "-o", "jsonpath={.status.phase}") == "UploadReady", timeout=60,
             what="UploadReady after preallocation")
    res = virtctl(cluster, k, f"dv pre --no-create --image-path={images.raw}")
    assert res.returncode == 0, res.stdout + res.stderr
    dev = disk_of(cluster, k, "pre")
    with dev.open("rb") as d, images.raw.open("rb") as f:
        assert d.read(images.size) == f.read()
        assert d.read() == bytes(128 * MIB - images.size)
    backing = Path(f"/sys/block/{dev.name}/loop/backing_file").read_text().strip()
    assert os.stat(backing).st_blocks * 512 >= 128 * MIB
    assert k.json("get", "pvc", "pre")["metadata"]["annotations"]["cdi.kubevirt.io/storage.preallocation"] == "true"


def test_a_scratch_claim_that_cannot_bind_is_explained(cluster: Cluster, k: Kubectl) -> None:
    """R41: scratch from HCO's scratchSpaceStorageClass; when that class cannot provision, the DV's Bound
    condition says why (the scratch claim's event), instead of a bare "Creating scratch space"."""
    k.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "nopool-" + k.namespace},
              "provisioner": "kubevirt.io.hostpath-provisioner", "parameters": {"storagePool": "missing"}})
    hco = ["patch", "hco", "-n", "openshift-cnv", "kubevirt-hyperconverged", "--type", "merge", "-p"]
    k.run(*hco, json.dumps({"spec": {"scratchSpaceStorageClass": "nopool-" + k.namespace}}), namespace=None)
    try:
        wait_for(lambda: k("get", "cdiconfig", "config", "-o", "jsonpath={.status.scratchSpaceStorageClass}",
                           namespace=None) == "nopool-" + k.namespace, timeout=20, what="scratch class in CDIConfig")
        k.create({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "noscratch"},
                  "spec": {"source": {"upload": {}}, "storage": {"resources": {"requests": {"storage": "64Mi"}}}}})
        bound = wait_for(lambda: (lambda m: m if "missing" in m else "")(k(
            "get", "dv", "noscratch", "-o", "jsonpath={.status.conditions[?(@.type==\"Bound\")].message}")),
            timeout=30, what="the scratch claim's failure on the DV")
        assert bound.startswith("Creating scratch space: ")
        assert k("get", "dv", "noscratch", "-o", "jsonpath={.status.phase}") == "UploadScheduled"
    finally:
        k.run(*hco, '{"spec":{"scratchSpaceStorageClass":null}}', namespace=None)
        wait_for(lambda: k("get", "cdiconfig", "config", "-o", "jsonpath={.status.scratchSpaceStorageClass}",
                           namespace=None) != "nopool-" + k.namespace, timeout=20, what="scratch class restored")
        k.run("delete", "dv", "noscratch", "--wait=false", check=False)
        k.run("delete", "storageclass", "nopool-" + k.namespace, namespace=None, check=False)
