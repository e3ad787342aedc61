"""`vdisk up` as a user runs it: first-start objects, kubeconfig merge, Ctrl-C, restart keeps everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import EXAMPLES, Kubectl, VdiskProcess, kubectl_binaries, start_vdisk, wait_for


def _kubectl(vp: VdiskProcess, tmp: Path) -> Kubectl:
    cache = tmp / f"cache-{time.time_ns()}"
    return Kubectl(kubectl_binaries()[0], vp.kubeconfig, cache)


def test_first_start_creates_namespaces_hco_and_cdiconfig(vdisk: VdiskProcess, tmp_path: Path) -> None:
    """R45: namespaces default, kube-system, openshift-cnv; the HyperConverged; CDIConfig `config`."""
    k = _kubectl(vdisk, tmp_path)
    names = k("get", "ns", "-o", "name").split()
    for ns in ("default", "kube-system", "openshift-cnv"):
        assert f"namespace/{ns}" in names
    assert k("get", "hco", "-n", "openshift-cnv", "-o", "name").split() == \
        ["hyperconverged.hco.kubevirt.io/kubevirt-hyperconverged"]
    assert k("get", "cdiconfig", "-o", "name").split() == ["cdiconfig.cdi.kubevirt.io/config"]


def test_hco_edit_reaches_cdiconfig_within_a_second(vdisk: VdiskProcess, tmp_path: Path) -> None:
    """R13/R14/R45: `kubectl edit hco` -> `kubectl get cdiconfig -o jsonpath=...filesystemOverhead` shows it."""
    k = _kubectl(vdisk, tmp_path)
    jp = "jsonpath={.items..status.filesystemOverhead}"
    before = wait_for(lambda: k("get", "cdiconfig", "-o", jp), what="cdiconfig status")
    assert json.loads(before)["global"] in ("0.055", "0.07", "0.08")
    editor = tmp_path / "edit.sh"
    editor.write_text(textwrap_editor())
    editor.chmod(0o755)
    k("edit", "hco", "-n", "openshift-cnv", "kubevirt-hyperconverged", env={"KUBE_EDITOR": str(editor)})
    t0 = time.monotonic()
    got = wait_for(lambda: json.loads(k("get", "cdiconfig", "-o", jp) or "{}").get("global") == "0.08", timeout=5,
                   what="global overhead 0.08")
    assert got and time.monotonic() - t0 < 1.0 + 0.5  # kubectl itself takes ~0.1 s per call
    k("patch", "hco", "-n", "openshift-cnv", "kubevirt-hyperconverged", "--type", "merge",
      "--patch-file", str(EXAMPLES / "09-hco-filesystemoverhead.patch.yaml"))
    k("create", "-f", str(EXAMPLES / "02-storageclass_csi.yaml"), check=False)
    fo = wait_for(lambda: (lambda d: d if d.get("storageClass", {}).get("hostpath-csi") == "0.04" else None)(
        json.loads(k("get", "cdiconfig", "-o", jp) or "{}")), timeout=5, what="per-class overhead")
    assert fo["global"] == "0.07"
    # An invalid value is refused by the HCO schema (422), and nothing changes
    bad = k.run("patch", "hco", "-n", "openshift-cnv", "kubevirt-hyperconverged", "--type", "merge", "-p",
                '{"spec":{"filesystemOverhead":{"global":"1.5"}}}', check=False)
    assert bad.returncode != 0 and "spec.filesystemOverhead.global" in bad.stderr
    assert json.loads(k("get", "cdiconfig", "-o", jp))["global"] == "0.07"


def textwrap_editor() -> str:
    # an editor that sets spec.filesystemOverhead.global: "0.08" in the YAML kubectl hands it
    return (
        "#!/usr/bin/env python3\n"
        "import sys, yaml\n"
        "p = sys.argv[1]\n"
        "d = yaml.safe_load(open(p))\n"
        "d['spec'].setdefault('filesystemOverhead', {})['global'] = '0.08'\n"
        "open(p, 'w').write(yaml.safe_dump(d))\n"
    ).replace("#!/usr/bin/env python3", f"#!{sys.executable}")


def test_restart_keeps_objects_and_revisions_keep_increasing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    vp = start_vdisk(data, command="apiserver")
    try:
        k = _kubectl(vp, tmp_path)
        k("create", "-f", str(EXAMPLES / "19-dv-blank.yaml"), "-n", "default")
        before = k.json("get", "dv", "blank-image-datavolume", "-n", "default")
    finally:
        assert vp.stop(signal.SIGINT) == 0
    assert "vdisk stopped" in vp.log()
    vp2 = start_vdisk(data, command="apiserver")
    try:
        k = _kubectl(vp2, tmp_path)
        after = k.json("get", "dv", "blank-image-datavolume", "-n", "default")
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        k("create", "configmap", "later", "-n", "default")
        later = k.json("get", "cm", "later", "-n", "default")
        assert int(later["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
        # a watch from before the restart resumes
        with vp2.http() as c, c.stream("GET", "/api/v1/namespaces/default/configmaps",
                                       params={"watch": "true",
                                               "resourceVersion": before["metadata"]["resourceVersion"]}) as r:
            first = json.loads(next(line for line in r.iter_lines() if line))
        assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "later"
    finally:
        vp2.stop()


def test_up_merges_a_vdisk_context_into_the_users_kubeconfig(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "https://example.invalid:6443"}}],
        "users": [{"name": "other", "user": {"token": "x"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}]}))
    vp = start_vdisk(tmp_path / "data", "--merge-kubeconfig", command="apiserver",
                     env={"HOME": str(home), "KUBECONFIG": str(home / ".kube" / "config")})
    try:
        cfg = yaml.safe_load((home / ".kube" / "config").read_text())
        assert cfg["current-context"] == "vdisk"
        assert {c["name"] for c in cfg["contexts"]} == {"other", "vdisk"}
        res = subprocess.run([kubectl_binaries()[0], "--cache-dir", str(tmp_path / "c"), "get", "ns", "default",
                              "-o", "name"], capture_output=True, text=True,
                             env={**os.environ, "HOME": str(home), "KUBECONFIG": str(home / ".kube" / "config")})
        assert res.stdout.strip() == "namespace/default", res.stderr
        out = vp.log()
        assert "kubeconfig:" in out and str(home / ".kube" / "config") in out
    finally:
        vp.stop()


def test_unreadable_listen_address_fails_clearly(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "vdisk.cli.main", "up", "--data-dir", str(tmp_path),
                          "--listen", "nonsense"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "--listen must be HOST:PORT" in res.stderr


def test_busy_port_and_busy_data_dir_fail_clearly(vdisk: VdiskProcess, tmp_path: Path) -> None:
    port = vdisk.url.rsplit(":", 1)[1]
    res = subprocess.run([sys.executable, "-m", "vdisk.cli.main", "apiserver", "--data-dir", str(tmp_path / "d"),
                          "--listen", f"127.0.0.1:{port}", "--no-merge-kubeconfig"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "vdisk.cli.main", "apiserver", "--data-dir", str(vdisk.data_dir),
                          "--listen", "127.0.0.1:0", "--no-merge-kubeconfig"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1
    assert "another vdisk is running with data dir" in res.stderr
