"""Registry image references as CDI's importer (containers/image) reads them."""

from __future__ import annotations

import pytest

from vdisk.dataplane.errors import SourceError, UnsupportedSource
from vdisk.dataplane.registry import DOCKER_HUB, ImageRef, parse_url


@pytest.mark.parametrize("url,ref", [
    ("docker://kubevirt/fedora-cloud-container-disk-demo",
     ImageRef(DOCKER_HUB, "kubevirt/fedora-cloud-container-disk-demo", "latest")),
    ("docker://ubuntu", ImageRef(DOCKER_HUB, "library/ubuntu", "latest")),
    ("docker://ubuntu:22.04", ImageRef(DOCKER_HUB, "library/ubuntu", "22.04")),
    ("docker://quay.io/containerdisks/fedora:40", ImageRef("quay.io", "containerdisks/fedora", "40")),
    ("docker://127.0.0.1:5000/vdisk/raw:v1", ImageRef("127.0.0.1:5000", "vdisk/raw", "v1")),
    ("docker://registry:5000/a/b", ImageRef("registry:5000", "a/b", "latest")),
    ("docker://localhost/x@sha256:abc", ImageRef("localhost", "x", "sha256:abc")),
])
def test_references_are_normalised(url: str, ref: ImageRef) -> None:
    assert parse_url(url) == ref


def test_bad_references() -> None:
    with pytest.raises(SourceError, match="no repository"):
        parse_url("docker://")
    with pytest.raises(UnsupportedSource, match="Illegal registry source URL scheme") as exc:
        parse_url("oci-archive:///images/disk.tar")
    assert exc.value.fatal
