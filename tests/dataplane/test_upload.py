"""The upload server process and the uploader, without a cluster: the resumable protocol itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.servers import MIB, Images, write_pattern
from vdisk.dataplane import qemu_img
from vdisk.dataplane.uploadclient import MERGE_GAP, Uploader, data_extents


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    (tmp_path / "data").mkdir()
    (tmp_path / "scratch").mkdir()
    env = {**os.environ, "UPLOAD_TARGET": str(tmp_path / "data"), "UPLOAD_SCRATCH": str(tmp_path / "scratch"),
           "UPLOAD_IMAGE_SIZE": str(512 * MIB), "VDISK_PROGRESS_FILE": str(tmp_path / "progress"),
           "UPLOAD_KEY": "k3y"}
    proc = subprocess.Popen([sys.executable, "-m", "vdisk.worker", "uploadserver"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("wb"))
    try:
        deadline = time.monotonic() + 20
        endpoint = None
        while endpoint is None and time.monotonic() < deadline:
            try:
                endpoint = json.loads((tmp_path / "progress").read_text()).get("endpoint")
            except (OSError, ValueError):
                time.sleep(0.05)
        assert endpoint, (tmp_path / "log").read_text()
        yield str(endpoint), tmp_path / "data" / "disk.img"
    finally:
        proc.kill()
        proc.wait()


def test_data_extents_skip_holes_and_start_at_zero(tmp_path: Path) -> None:
    f = tmp_path / "s.raw"
    write_pattern(f, 64 * MIB, [(8 * MIB, MIB), (9 * MIB + MERGE_GAP // 2, MIB), (40 * MIB, 2 * MIB)])
    fd = os.open(f, os.O_RDONLY)
    try:
        ext = data_extents(fd, 64 * MIB)
    finally:
        os.close(fd)
    assert ext[0] == (0, 64 * 1024)  # the head, for format sniffing, though it is a hole
    assert ext[1][0] == 8 * MIB and ext[1][1] >= 2 * MIB  # two extents a small gap apart: merged
    assert ext[-1] == (40 * MIB, 2 * MIB)


def test_ranges_in_any_order_with_gaps_then_finish(server: tuple[str, Path], tmp_path: Path) -> None:
    url, disk = server
    src = tmp_path / "img.raw"
    write_pattern(src, 8 * MIB, [(0, MIB), (4 * MIB, 2 * MIB)])
    data = src.read_bytes()
    h = {"X-Vdisk-Upload-Key": "k3y"}
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.put("/v1beta1/upload", content=b"x", headers={"Content-Range": "bytes 0-0/1"}).status_code == 403
        r = c.put("/v1beta1/upload", content=data[:MIB], headers={**h, "Content-Range": f"bytes 0-{MIB - 1}/{len(data)}"})
        assert r.status_code == 200 and r.json()["offset"] == MIB and r.json()["kind"] == "raw"
        r = c.put("/v1beta1/upload", content=data[4 * MIB:6 * MIB],
                  headers={**h, "Content-Range": f"bytes {4 * MIB}-{6 * MIB - 1}/{len(data)}"})
        assert r.json()["offset"] == 6 * MIB
        r = c.patch("/v1beta1/upload", json={"op": "finish", "size": len(data)}, headers=h)
        assert r.status_code == 200 and r.json()["done"]
    assert disk.read_bytes()[:len(data)] == data


def test_a_stream_must_continue_at_its_offset(server: tuple[str, Path], images: Images) -> None:
    url, disk = server
    gz = (images.dir / "disk.raw.gz").read_bytes()
    h = {"X-Vdisk-Upload-Key": "k3y"}
    half = len(gz) // 2
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.put("/v1beta1/upload", content=gz[:half], headers={**h, "Content-Range": f"bytes 0-{half - 1}/{len(gz)}"})
        assert r.json()["kind"] == "raw.gz" and r.json()["offset"] == half
        r = c.put("/v1beta1/upload", content=gz[half + 10:],
                  headers={**h, "Content-Range": f"bytes {half + 10}-{len(gz) - 1}/{len(gz)}"})
        assert r.status_code == 416 and r.json()["offset"] == half
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.put("/v1beta1/upload", content=gz[half:], headers={**h, "Content-Range": f"bytes {half}-{len(gz) - 1}/{len(gz)}"})
        assert r.status_code == 200
        assert c.patch("/v1beta1/upload", json={"op": "finish", "size": len(gz)}, headers=h).status_code == 200
    assert qemu_img.compare(str(disk), str(images.raw), "raw", "raw")


def test_uploader_sends_only_data(server: tuple[str, Path], tmp_path: Path) -> None:
    url, disk = server
    src = tmp_path / "sparse.raw"
    write_pattern(src, 256 * MIB, [(i * 32 * MIB, MIB) for i in range(8)])

    up = Uploader(url, lambda refresh: "unused", headers={"X-Vdisk-Upload-Key": "k3y"})
    stats = up.upload(src)
    assert stats.sparse and stats.sent < 9 * MIB + 64 * 1024
    assert disk.read_bytes()[:256 * MIB] == src.read_bytes()


def test_gaps_read_as_zeros_on_a_device_holding_old_data(loop_device: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A sparse client never sends its holes: on a device that cannot be zeroed cheaply (simulated:
    loop devices here all offload write-zeroes), the gaps must still be zeroed before Succeeded."""
    from vdisk.dataplane import importer
    from vdisk.dataplane.upload import DirectSession

    with loop_device.open("r+b") as dev:  # old data everywhere
        dev.write(b"\xab" * (96 * MIB))
    monkeypatch.setattr(importer, "_zero_device", lambda dev: False)
    src = tmp_path / "sparse.raw"
    write_pattern(src, 64 * MIB, [(0, MIB), (20 * MIB + 512, 3 * MIB), (60 * MIB, 4 * MIB - 4096)])
    session = DirectSession(importer.Volume(path=loop_device, request=96 * MIB), 64 * MIB,
                            importer.ProgressFile(None))
    assert not session.target.fresh
    fd = os.open(src, os.O_RDONLY)
    try:
        from io import BytesIO
        for off, n in reversed(data_extents(fd, 64 * MIB)):  # out of order, as a resumed upload may be
            session.write(off, BytesIO(os.pread(fd, n, off)), n)
    finally:
        os.close(fd)
    session.finish(64 * MIB)
    with loop_device.open("rb") as dev, src.open("rb") as f:
        assert dev.read(64 * MIB) == f.read()


def test_an_aborted_stream_is_not_processed(tmp_path: Path) -> None:
    """An aborted in-order session (CDI's POST starts over) must end its worker with an error, not hand it
    a truncated image as if it were whole: the next session reuses the same scratch and disk paths."""
    from vdisk.dataplane import importer
    from vdisk.dataplane.upload import PipeSession, SessionFailed

    seen: list[int] = []

    def consume(reader: object) -> importer.ImportResult:
        buf = memoryview(bytearray(MIB))
        total = 0
        while n := reader.readinto(buf):  # type: ignore[attr-defined]
            total += n
        seen.append(total)  # reached only if the end looked like the end of the image
        return importer.ImportResult("upload", total, total, "", "raw")

    from io import BytesIO
    session = PipeSession(importer.Volume(path=tmp_path, request=64 * MIB), 8 * MIB, importer.ProgressFile(None),
                          "raw.gz", consume)
    session.write(0, BytesIO(b"x" * (3 * MIB)), 3 * MIB)
    session.abort()
    assert seen == [] and isinstance(session._error, SessionFailed)


def test_a_lost_finish_answer_is_recovered(server: tuple[str, Path], images: Images,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The finish of a qcow2 converts before it answers; when that answer is lost (connection dropped),
    the client asks the server instead of failing the upload or finishing twice."""
    import threading

    url, disk = server
    real_finish = Uploader._finish
    calls: list[int] = []

    def lossy_finish(self: Uploader, size: int) -> None:
        calls.append(size)
        if len(calls) == 1:
            threading.Thread(target=real_finish, args=(self, size), daemon=True).start()
            time.sleep(0.02)
            raise ConnectionResetError("the answer to finish was lost")
        real_finish(self, size)

    monkeypatch.setattr(Uploader, "_finish", lossy_finish)
    up = Uploader(url, lambda refresh: "t", headers={"X-Vdisk-Upload-Key": "k3y"})
    up.upload(images.dir / "disk.qcow2", retries=3)
    assert calls == [calls[0]]  # finished once: the second attempt found it finishing or done
    deadline = time.monotonic() + 30
    while not disk.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert qemu_img.compare(str(disk), str(images.raw), "raw", "raw")


def test_a_busy_proxy_is_waited_for(server: tuple[str, Path], images: Images) -> None:
    """503 with Retry-After (the proxy while the upload server restarts) is retried, not fatal; the
    upload then goes through whole."""
    from tests.servers import cutting_relay

    url, disk = server
    port = int(url.rsplit(":", 1)[1])
    with cutting_relay(port, cut_after=1 << 62, cuts=0, busy=2) as relay:
        up = Uploader(f"http://127.0.0.1:{relay.port}", lambda refresh: "t", headers={"X-Vdisk-Upload-Key": "k3y"})
        up.upload(images.raw, retries=3)
    assert up.stats.attempts == 3 and up.stats.sent < images.size  # retried, still sparse (not CDI's POST)
    assert qemu_img.compare(str(disk), str(images.raw), "raw", "raw")


def test_tokens_are_renewed_before_they_age_out(server: tuple[str, Path], images: Images,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Upload tokens live 5 minutes and are checked on every request: a long upload of many requests asks
    for a fresh one before the old one is refused, instead of spending its 401 retries."""
    from vdisk.dataplane import uploadclient

    url, disk = server
    asked: list[bool] = []

    def token(refresh: bool) -> str:
        asked.append(refresh)
        return "t"

    up = Uploader(url, token, headers={"X-Vdisk-Upload-Key": "k3y"})
    monkeypatch.setattr(uploadclient, "TOKEN_MAX_AGE", -1.0)  # every token is already "old"
    up.upload(images.dir / "disk.qcow2", retries=1)
    assert asked[0] is False and asked.count(True) >= 3  # status, data, finish: each with a fresh token
    assert qemu_img.compare(str(disk), str(images.raw), "raw", "raw")
