"""The seed's manifests with the stock kubectl: created verbatim, printed with upstream columns."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import EXAMPLES, Kubectl, contains

MANIFESTS = sorted(p.name for p in EXAMPLES.glob("*.yaml") if not p.name.startswith("09-"))
HCO_EXAMPLES = {"10-hco-storageworkloads.yaml", "22-hco-insecureregistries.yaml", "23-hco-scratchspace.yaml"}
CLUSTER_SCOPED = {"01-hpp_cr.yaml", "02-storageclass_csi.yaml", "04-hpp_pvc_template_pool.yaml",
                  "07-storageprofile-claimpropertysets.yaml", "08-storageprofile-clonestrategy.yaml",
                  "14-local-block-pv.yaml", "17-local-destination-pv.yaml"}


def _cleanup_cluster_scoped(kubectl: Kubectl, name: str) -> None:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    kubectl.run("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", "--wait=false",
                check=False)


def test_hpp_example_with_misplaced_workload_is_refused_under_strict_validation(kubectl: Kubectl) -> None:
    """R1: example 01 has `workload` at the top level; the server names the unknown field."""
    res = kubectl.run("create", "-f", str(EXAMPLES / "01-hpp_cr.yaml"), check=False)
    assert res.returncode != 0
    assert 'unknown field "workload"' in res.stderr
    assert "BadRequest" in res.stderr
    assert kubectl.run("get", "hostpathprovisioner", "hostpath-provisioner", check=False).returncode != 0


def test_hpp_example_is_accepted_with_a_warning_under_validate_warn(kubectl: Kubectl) -> None:
    """R1: `--validate=warn` creates it, prints `Warning: unknown field "workload"` and prunes the field."""
    _cleanup_cluster_scoped(kubectl, "01-hpp_cr.yaml")
    try:
        res = kubectl.run("create", "--validate=warn", "-f", str(EXAMPLES / "01-hpp_cr.yaml"))
        assert 'Warning: unknown field "workload"' in res.stderr
        obj = kubectl.json("get", "hostpathprovisioner", "hostpath-provisioner")
        assert "workload" not in obj
        assert obj["spec"]["storagePools"] == [{"name": "any_name", "path": "/var/myvolumes"}]
    finally:
        _cleanup_cluster_scoped(kubectl, "01-hpp_cr.yaml")


def test_datavolume_with_a_scheme_less_url_is_refused_naming_the_field(kubectl: Kubectl) -> None:
    """Example 11 verbatim: CDI's webhook refuses `url: "example.exampleurl.com"`."""
    res = kubectl.run("create", "-f", str(EXAMPLES / "11-dv-annotation.yaml"), check=False)
    assert res.returncode != 0
    assert "spec.source.http.url" in res.stderr and "Invalid source URL: example.exampleurl.com" in res.stderr
    fixed = yaml.safe_load((EXAMPLES / "11-dv-annotation.yaml").read_text())
    fixed["spec"]["source"]["http"]["url"] = "http://example.exampleurl.com/disk.img"
    assert "dv-ann created" in kubectl.create(fixed).stdout


@pytest.mark.parametrize("checksum,why", [("crc32:1234abcd", "algorithm one of md5, sha1, sha256, sha512"),
                                          ("sha256:abc", "a sha256 digest is 64 hexadecimal characters"),
                                          ("md5:" + "z" * 32, "a md5 digest is 32 hexadecimal characters")])
def test_a_malformed_checksum_is_refused_at_admission(kubectl: Kubectl, checksum: str, why: str) -> None:
    """CDI's webhook: "Invalid checksum format", before anything is downloaded."""
    dv = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "ck"},
          "spec": {"source": {"http": {"url": "http://example.com/disk.img", "checksum": checksum}},
                   "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}
    res = kubectl.run("create", "-f", "-", input=yaml.safe_dump(dv), check=False)
    assert res.returncode != 0 and "spec.source.http.checksum" in res.stderr, res.stderr
    assert "Invalid checksum format" in res.stderr and why in res.stderr
    dv["spec"]["source"]["http"]["checksum"] = " SHA256:" + "A" * 64  # trimmed, any case: accepted
    assert "ck created" in kubectl.create(dv).stdout
    kubectl.run("delete", "dv", "ck")


@pytest.mark.parametrize("name", [m for m in MANIFESTS if m not in HCO_EXAMPLES and not m.startswith(("01-", "11-"))])
def test_every_example_is_created_verbatim(kubectl: Kubectl, name: str) -> None:
    """Each seed manifest is accepted as written (in the test's namespace when namespaced)."""
    if name in CLUSTER_SCOPED:
        _cleanup_cluster_scoped(kubectl, name)
    try:
        out = kubectl("create", "-f", str(EXAMPLES / name))
        doc = yaml.safe_load((EXAMPLES / name).read_text())
        assert f"{doc['metadata']['name']} created" in out
        got = kubectl.json("get", "-f", str(EXAMPLES / name))
        assert got["metadata"]["name"] == doc["metadata"]["name"]
        assert got["metadata"]["uid"]
        assert int(got["metadata"]["resourceVersion"]) > 0
    finally:
        if name in CLUSTER_SCOPED:
            _cleanup_cluster_scoped(kubectl, name)


@pytest.mark.parametrize("name", sorted(HCO_EXAMPLES))
def test_hco_examples_apply_to_the_default_hyperconverged(kubectl: Kubectl, name: str) -> None:
    """R45: the HCO snippets are applied to the existing kubevirt-hyperconverged in openshift-cnv."""
    out = kubectl("apply", "-n", "openshift-cnv", "-f", str(EXAMPLES / name), namespace=None)
    assert "kubevirt-hyperconverged" in out
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    hco = kubectl.json("get", "hco", "kubevirt-hyperconverged", namespace="openshift-cnv")
    assert contains(hco["spec"], doc["spec"]), hco["spec"]


def test_datavolumes_print_phase_progress_restarts_age(kubectl: Kubectl) -> None:
    """`kubectl get dv` shows CDI's printer columns."""
    kubectl("create", "-f", str(EXAMPLES / "19-dv-blank.yaml"))
    header = kubectl("get", "dv").splitlines()[0].split()
    assert header == ["NAME", "PHASE", "PROGRESS", "RESTARTS", "AGE"]
    out = kubectl("get", "dvs", "blank-image-datavolume")
    assert out.splitlines()[1].split()[0] == "blank-image-datavolume"


def test_pvc_prints_upstream_columns_and_wide_volume_mode(kubectl: Kubectl) -> None:
    kubectl("create", "-f", str(EXAMPLES / "03-iso-pvc.yaml"))
    lines = kubectl("get", "pvc").splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
                                "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert lines[1].split()[:3] == ["iso-pvc", "Pending", "my-storage-class"]
    wide = kubectl("get", "pvc", "-o", "wide").splitlines()
    assert wide[0].split()[-1] == "VOLUMEMODE"
    assert wide[1].split()[-1] == "Block"


def test_storageclass_and_pv_columns(kubectl: Kubectl) -> None:
    _cleanup_cluster_scoped(kubectl, "02-storageclass_csi.yaml")
    _cleanup_cluster_scoped(kubectl, "17-local-destination-pv.yaml")
    try:
        kubectl("create", "-f", str(EXAMPLES / "02-storageclass_csi.yaml"))
        kubectl("create", "-f", str(EXAMPLES / "17-local-destination-pv.yaml"))
        sc = kubectl("get", "sc", "hostpath-csi").splitlines()
        assert sc[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION",
                                 "AGE"]
        assert sc[1].split()[:5] == ["hostpath-csi", "kubevirt.io.hostpath-provisioner", "Delete",
                                     "WaitForFirstConsumer", "false"]
        pv = kubectl("get", "pv", "destination-pv").splitlines()
        assert pv[0].split()[:4] == ["NAME", "CAPACITY", "ACCESS", "MODES"]
        assert pv[1].split()[:5] == ["destination-pv", "10Gi", "RWO", "Delete", "Available"]
    finally:
        _cleanup_cluster_scoped(kubectl, "02-storageclass_csi.yaml")
        _cleanup_cluster_scoped(kubectl, "17-local-destination-pv.yaml")


def test_vm_snapshot_and_restore_print_upstream_columns(kubectl: Kubectl) -> None:
    kubectl("create", "-f", str(EXAMPLES / "15-vmsnapshot.yaml"))
    kubectl("create", "-f", str(EXAMPLES / "16-vmrestore.yaml"))
    snap = kubectl("get", "vmsnapshot").splitlines()
    assert snap[0].split() == ["NAME", "SOURCEKIND", "SOURCENAME", "PHASE", "READYTOUSE", "CREATIONTIME", "ERROR"]
    assert snap[1].split()[:3] == ["my-vmsnapshot", "VirtualMachine", "my-vm"]
    restore = kubectl("get", "vmrestore").splitlines()
    assert restore[0].split() == ["NAME", "TARGETKIND", "TARGETNAME", "COMPLETE", "RESTORETIME"]
