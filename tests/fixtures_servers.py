"""Servers and images shared by the data-plane and import tests (pytest fixtures, started once per session)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Images, Nginx, Registry, make_images, nginx, registry


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return make_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def web(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(images.dir, tmp_path_factory.mktemp("nginx")) as n:
        yield n


@pytest.fixture(scope="session")
def secure_registry(web: Nginx, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry(tmp_path_factory.mktemp("registry-tls"), ca=web.ca, user="puller", password="pull-pass") as r:
        yield r


@pytest.fixture(scope="session")
def insecure_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry(tmp_path_factory.mktemp("registry-plain")) as r:
        yield r


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    """A 96 MiB loop device over a sparse file (ours only: detached after the test)."""
    backing = tmp_path / "block.img"
    with backing.open("wb") as f:
        f.truncate(96 * 1024 * 1024)
    dev = subprocess.run(["losetup", "-f", "--show", str(backing)], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        yield Path(dev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
