"""The importer's data path against real nginx, a real registry and real qemu-img (R23, R35, R39, R40, R42).

Each import is checked the way a user would: `qemu-img compare` of the written disk against the source
image, holes with SEEK_DATA/st_blocks, the disk size against the volume's usable space.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

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
from vdisk.dataplane.errors import (
    AuthError,
    ChecksumMismatch,
    DataplaneError,
    FormatError,
    ScratchRequired,
    SourceError,
    TooSmall,
    UnsafeImage,
)
from vdisk.dataplane.http import HttpSpec
from vdisk.dataplane.importer import Volume, create_blank, import_http, import_registry
from vdisk.dataplane.progress import ProgressFile, read_progress
from vdisk.dataplane.registry import NOT_FOUND, RegistrySpec

GIB = 1024 * MIB


def volume(tmp: Path, request: int = 128 * MIB, scratch: bool = False, **kw: object) -> Volume:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    sc = None
    if scratch:
        sc = tmp / "scratch"
        sc.mkdir(exist_ok=True)
    return Volume(path=data, request=request, scratch=sc, **kw)  # type: ignore[arg-type]


def same_content(disk: Path, source: Path) -> bool:
    return qemu_img.compare(str(disk), str(source), "raw", None)


def data_extents(path: Path) -> int:
    """Bytes covered by data extents (SEEK_DATA/SEEK_HOLE), i.e. what is not a hole."""
    total = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        pos = 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            total += stop - start
            pos = stop
    finally:
        os.close(fd)
    return total


@pytest.mark.parametrize("name", ["disk.raw", "disk.raw.gz", "disk.raw.xz", "disk.raw.zst"])
def test_raw_streams_without_scratch_and_keeps_holes(tmp_path: Path, web: Nginx, images: Images, name: str) -> None:
    vol = volume(tmp_path)
    result = import_http(HttpSpec(web.url(name)), vol)
    assert result.route == "stream"
    disk = vol.path / "disk.img"
    assert same_content(disk, images.raw)
    # the 64 MiB image holds 16 MiB of data: the rest stays holes
    assert data_extents(disk) <= 17 * MIB
    # disk.img fills the volume less the overhead (grown, never shrunk)
    assert disk.stat().st_size == vol.usable() >= images.size


@pytest.mark.parametrize("name", ["disk.qcow2", "disk.vmdk", "disk.vdi", "disk.vhdx", "disk.vhd"])
def test_convertible_formats_convert_from_the_server_without_scratch(tmp_path: Path, web: Nginx, images: Images,
                                                                     name: str) -> None:
    vol = volume(tmp_path)
    result = import_http(HttpSpec(web.url(name)), vol)
    assert result.route == "nbdkit"
    disk = vol.path / "disk.img"
    assert qemu_img.compare(str(disk), str(images.dir / name), "raw", None)
    assert data_extents(disk) <= 17 * MIB


@pytest.mark.parametrize("name", ["disk.qcow2.gz", "disk.qcow2.xz", "disk.qcow2.zst"])
def test_compressed_qcow2_needs_scratch(tmp_path: Path, web: Nginx, images: Images, name: str) -> None:
    with pytest.raises(ScratchRequired, match="compressed"):
        import_http(HttpSpec(web.url(name)), volume(tmp_path))
    vol = volume(tmp_path, scratch=True)
    result = import_http(HttpSpec(web.url(name)), vol)
    assert result.route == "scratch"
    assert same_content(vol.path / "disk.img", images.raw)
    assert list((tmp_path / "scratch").iterdir()) == []  # the scratch copy is gone


def test_https_needs_the_ca(tmp_path: Path, web: Nginx, images: Images) -> None:
    with pytest.raises(SourceError, match="certificate"):
        import_http(HttpSpec(web.url("disk.raw.xz", "https")), volume(tmp_path))
    vol = volume(tmp_path)
    import_http(HttpSpec(web.url("disk.raw.xz", "https"), ca_files=[web.ca.cert]), vol)
    assert same_content(vol.path / "disk.img", images.raw)
    # qcow2 over HTTPS with the custom CA: nbdkit gets the CA too, no scratch needed
    vol2 = volume(tmp_path / "q")
    r = import_http(HttpSpec(web.url("disk.qcow2", "https"), ca_files=[web.ca.cert]), vol2)
    assert r.route == "nbdkit"
    assert same_content(vol2.path / "disk.img", images.raw)


def test_basic_auth(tmp_path: Path, web: Nginx, images: Images) -> None:
    with pytest.raises(AuthError, match="expected status code 200, got 401"):
        import_http(HttpSpec(web.url("disk.raw", "auth"), username=web.user, password="wrong"), volume(tmp_path))
    vol = volume(tmp_path)
    import_http(HttpSpec(web.url("disk.qcow2", "auth"), username=web.user, password=web.password), vol)
    assert same_content(vol.path / "disk.img", images.raw)


def test_not_found(tmp_path: Path, web: Nginx) -> None:
    with pytest.raises(SourceError, match="expected status code 200, got 404. Status: 404 Not Found"):
        import_http(HttpSpec(web.url("missing.img")), volume(tmp_path))


def test_unreachable_sources_in_cdis_words(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/disk.img"
    with pytest.raises(SourceError, match=f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused'):
        import_http(HttpSpec(url), volume(tmp_path))
    with pytest.raises(SourceError, match="dial tcp: lookup no-such-host.invalid: no such host"):
        import_http(HttpSpec("http://no-such-host.invalid/disk.img"), volume(tmp_path))


def test_checksum_verified_while_streaming(tmp_path: Path, web: Nginx, images: Images) -> None:
    good = "sha256:" + hashlib.sha256((images.dir / "disk.raw.gz").read_bytes()).hexdigest()
    vol = volume(tmp_path)
    import_http(HttpSpec(web.url("disk.raw.gz")), vol, checksum=good)
    assert same_content(vol.path / "disk.img", images.raw)
    with pytest.raises(ChecksumMismatch, match="checksum mismatch") as exc:
        import_http(HttpSpec(web.url("disk.raw.gz")), volume(tmp_path), checksum="sha256:" + "0" * 64)
    assert exc.value.fatal
    assert not (vol.path / "disk.img").exists()  # no unverified data left on the claim
    with pytest.raises(ChecksumMismatch):
        import_http(HttpSpec(web.url("archive.tar")), vol, content_type="archive", checksum="md5:" + "0" * 32)
    assert list(vol.path.iterdir()) == []
    # a qcow2 with a checksum is verified on the whole download: through scratch
    vol = volume(tmp_path, scratch=True)
    md5 = "md5:" + hashlib.md5((images.dir / "disk.qcow2").read_bytes()).hexdigest()
    assert import_http(HttpSpec(web.url("disk.qcow2")), vol, checksum=md5).route == "scratch"


@pytest.mark.parametrize("name,error", [("truncated.raw.gz", FormatError), ("truncated.raw.xz", FormatError),
                                        ("truncated.raw.zst", FormatError),
                                        ("corrupt.qcow2", DataplaneError), ("tiny.bin", FormatError)])
def test_broken_images_fail(tmp_path: Path, web: Nginx, name: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        import_http(HttpSpec(web.url(name)), volume(tmp_path, scratch=True))


@pytest.mark.parametrize("name,what", [("backed.qcow2", "backing file"), ("datafile.qcow2", "external data file")])
def test_unsafe_images_refused(tmp_path: Path, web: Nginx, name: str, what: str) -> None:
    with pytest.raises(UnsafeImage, match=what) as exc:
        import_http(HttpSpec(web.url(name)), volume(tmp_path))
    assert exc.value.fatal
    assert not (tmp_path / "data" / "disk.img").exists()


def test_image_larger_than_volume(tmp_path: Path, web: Nginx) -> None:
    with pytest.raises(TooSmall, match="is larger than the reported available storage"):
        import_http(HttpSpec(web.url("big.qcow2")), volume(tmp_path, request=1 * GIB))
    for name in ("disk.raw", "disk.raw.xz", "disk.raw.zst", "disk.raw.gz"):
        with pytest.raises(TooSmall, match="larger than the reported available storage"):
            import_http(HttpSpec(web.url(name)), volume(tmp_path / name, request=32 * MIB))


def test_overhead_leaves_room(tmp_path: Path, web: Nginx) -> None:
    vol = volume(tmp_path, request=1 * GIB, overhead=0.055)
    import_http(HttpSpec(web.url("disk.raw")), vol)
    # CDI GetUsableSpace: RoundDown(ceil(1Gi / 1.055), 1MiB)
    assert (vol.path / "disk.img").stat().st_size == 970 * MIB


def test_stalled_server_times_out(tmp_path: Path) -> None:
    payload = os.urandom(4 * MIB)
    with stalling_server(payload, stall_after=MIB) as url:
        with pytest.raises(SourceError, match="failed at byte"):
            import_http(HttpSpec(url, read_timeout=0.5), volume(tmp_path))


def test_archive_unpacks_into_the_volume(tmp_path: Path, web: Nginx, images: Images) -> None:
    vol = volume(tmp_path)
    result = import_http(HttpSpec(web.url("archive.tar")), vol, content_type="archive")
    assert result.route == "archive"
    assert (vol.path / "hello.txt").read_text() == "hello from an archive\n"
    assert (vol.path / "sub" / "data.bin").stat().st_size == 3 * MIB
    assert not (vol.path / "disk.img").exists()


def test_block_target(tmp_path: Path, web: Nginx, images: Images, loop_device: Path) -> None:
    for name in ("disk.raw.xz", "disk.qcow2"):
        vol = Volume(path=loop_device, request=96 * MIB)
        import_http(HttpSpec(web.url(name)), vol)
        # the device is larger than the image: compare the image's length
        out = subprocess.run(["cmp", "-n", str(images.size), str(loop_device), str(images.raw)], capture_output=True)
        assert out.returncode == 0, out.stdout


def test_blank_disk(tmp_path: Path) -> None:
    vol = volume(tmp_path, request=1 * GIB, overhead=0.055)
    create_blank(vol)
    disk = vol.path / "disk.img"
    assert disk.stat().st_size == 970 * MIB
    assert allocated(disk) == 0
    vol = volume(tmp_path / "p", request=64 * MIB, preallocation=True)
    result = create_blank(vol)
    assert result.preallocation_applied
    assert allocated(vol.path / "disk.img") >= 64 * MIB


def test_preallocation_of_an_import(tmp_path: Path, web: Nginx, images: Images) -> None:
    vol = volume(tmp_path, request=128 * MIB, preallocation=True)
    result = import_http(HttpSpec(web.url("disk.qcow2")), vol)
    assert result.preallocation_applied
    disk = vol.path / "disk.img"
    assert allocated(disk) >= disk.stat().st_size
    assert same_content(disk, images.raw)


def test_progress_file(tmp_path: Path, web: Nginx) -> None:
    pf = tmp_path / "progress"
    report = ProgressFile(pf)
    import_http(HttpSpec(web.url("disk.raw.gz")), volume(tmp_path), report=report)
    report.close()
    rec = read_progress(pf)
    assert rec is not None and rec["percent"] == 100.0 and rec["phase"] == "TransferDataFile"
    assert rec["bytes"] == rec["total"] == (web.root / "disk.raw.gz").stat().st_size


# --- registry ---------------------------------------------------------------------------------------------

def test_registry_raw_disk_streams(tmp_path: Path, secure_registry: Registry, web: Nginx, images: Images) -> None:
    push_container_disk(secure_registry, "disks/raw", "v1", [disk_layer(images.raw)])
    spec = RegistrySpec(f"docker://{secure_registry.host}/disks/raw:v1", username="puller", password="pull-pass",
                        ca_files=[web.ca.cert])
    vol = volume(tmp_path)
    result = import_registry(spec, vol)
    assert result.route == "stream"
    assert same_content(vol.path / "disk.img", images.raw)


def test_registry_qcow2_through_scratch(tmp_path: Path, secure_registry: Registry, web: Nginx, images: Images) -> None:
    push_container_disk(secure_registry, "disks/qcow", "latest",
                        [disk_layer(None, extra={"etc/os-release": b"ID=test\n"}),
                         disk_layer(images.dir / "disk.qcow2", name="fedora.qcow2")])
    spec = RegistrySpec(f"docker://{secure_registry.host}/disks/qcow", username="puller", password="pull-pass",
                        ca_files=[web.ca.cert])
    with pytest.raises(ScratchRequired):
        import_registry(spec, volume(tmp_path))
    vol = volume(tmp_path, scratch=True)
    assert import_registry(spec, vol).route == "scratch"
    assert same_content(vol.path / "disk.img", images.raw)


def test_registry_errors(tmp_path: Path, secure_registry: Registry, web: Nginx, images: Images) -> None:
    push_container_disk(secure_registry, "disks/empty", "v1", [disk_layer(None, extra={"etc/hostname": b"x\n"})])
    base = f"docker://{secure_registry.host}/disks"
    with pytest.raises(DataplaneError, match=NOT_FOUND):
        import_registry(RegistrySpec(f"{base}/empty:v1", username="puller", password="pull-pass",
                                     ca_files=[web.ca.cert]), volume(tmp_path))
    with pytest.raises(AuthError):
        import_registry(RegistrySpec(f"{base}/empty:v1", username="puller", password="nope",
                                     ca_files=[web.ca.cert]), volume(tmp_path))
    with pytest.raises(SourceError, match="certificate"):
        import_registry(RegistrySpec(f"{base}/empty:v1", username="puller", password="pull-pass"), volume(tmp_path))
    with pytest.raises(SourceError, match="404|not found|unknown"):
        import_registry(RegistrySpec(f"{base}/nothing:v1", username="puller", password="pull-pass",
                                     ca_files=[web.ca.cert]), volume(tmp_path))


def test_insecure_registry_over_plain_http(tmp_path: Path, insecure_registry: Registry, images: Images) -> None:
    push_container_disk(insecure_registry, "plain/disk", "v1", [disk_layer(images.raw, compress=False)],
                        compressed=False)
    url = f"docker://{insecure_registry.host}/plain/disk:v1"
    with pytest.raises(SourceError):
        import_registry(RegistrySpec(url), volume(tmp_path))
    vol = volume(tmp_path)
    import_registry(RegistrySpec(url, insecure_registries=[insecure_registry.host]), vol)
    assert same_content(vol.path / "disk.img", images.raw)


def test_usable_space_does_not_shrink_as_the_image_is_written(tmp_path: Path) -> None:
    """CDI computes the available space once: on a volume filesystem no larger than the claim, the image
    written so far (or a failed attempt's) must not count against the image itself."""
    mnt = tmp_path / "vol"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mnt)], check=True)
    try:
        vol = Volume(path=mnt, request=0, overhead=0.055)
        before = vol.usable()
        with (mnt / "disk.img").open("wb") as f:
            f.write(os.urandom(40 * MIB))
        assert vol.usable() == before and before >= 80 * MIB
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
