"""Import benchmark: vdisk's importer beside CDI's scratch path, same nginx, same images, one run.

Images (generated in a temp dir): a 4 GiB raw and a 4 GiB qcow2 each holding 2.5 GiB of data, a 1 GiB
raw with 512 MiB of data compressed with xz, and a sparse 8 GiB raw with 64 MiB of data. For each:

    vdisk      the data plane as the importer pod runs it (a child process: time to a durable disk, peak RSS)
    baseline   CDI's scratch path: `curl -o scratch URL && qemu-img convert -O raw scratch disk && sync disk`
               (for xz: `curl | xz -dc > scratch`, as CDI decompresses while downloading)

plus reference rows: nbdkit-curl into `qemu-img convert` (CDI's pre-validation path), and
`qemu-img convert -t none` of the local qcow2 (the disk's own limit). Then, through `vdisk up` and the
API: a 10Gi blank DataVolume and the 4 GiB qcow2 from `create` to Succeeded.

    python -m tests.bench.importer [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.apiserver import client_for  # noqa: E402
from tests.conftest import start_vdisk  # noqa: E402
from tests.servers import MIB, nginx  # noqa: E402

GIB = 1024 * MIB

CHILD = """
import json, resource, sys, time
from pathlib import Path
from vdisk.dataplane.http import HttpSpec
from vdisk.dataplane.importer import Volume, import_http
url, out, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
t0 = time.monotonic()
r = import_http(HttpSpec(url), Volume(path=out, request=size))
dt = time.monotonic() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"seconds": dt, "route": r.route, "rss": rss, "child_rss": kids}))
"""


def extents(total: int, data: int, n: int = 40) -> list[tuple[int, int]]:
    """`n` data extents spread over `total` bytes, `data` bytes in all (MiB aligned)."""
    each = data // n // MIB * MIB
    stride = total // n // MIB * MIB
    return [(i * stride, each) for i in range(n)]


def write_disk_like(path: Path, size: int, where: list[tuple[int, int]]) -> None:
    """A sparse raw image whose data compresses about 2:1, like an installed OS (half random bytes, half
    text that repeats), so compressed variants cost what they cost on real images."""
    text = (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit; /usr/lib/x86_64-linux-gnu/libc.so.6 "
            * 400)[:32 * 1024]
    with path.open("wb") as f:
        f.truncate(size)
        for off, length in where:
            f.seek(off)
            left = length
            while left > 0:
                block = b"".join(os.urandom(32 * 1024) + text for _ in range(16))  # 1 MiB
                n = min(left, len(block))
                f.write(block[:n])
                left -= n


def make_images(d: Path, quick: bool) -> dict[str, tuple[Path, int]]:
    scale = 4 if quick else 1
    raw = d / "big.raw"
    write_disk_like(raw, 4 * GIB // scale, extents(4 * GIB // scale, 2560 * MIB // scale))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(d / "big.qcow2")], check=True)
    small = d / "small.raw"
    write_disk_like(small, GIB // scale, extents(GIB // scale, 512 * MIB // scale))
    subprocess.run(["xz", "-0", "-T2", "-k", "-f", str(small)], check=True)
    sparse = d / "sparse.raw"
    write_disk_like(sparse, 8 * GIB // scale, extents(8 * GIB // scale, 64 * MIB, n=16))
    return {"raw 4 GiB (2.5 GiB data)": (raw, raw.stat().st_size),
            "qcow2 4 GiB (2.5 GiB data)": (d / "big.qcow2", raw.stat().st_size),
            "xz raw 1 GiB (512 MiB data)": (d / "small.raw.xz", small.stat().st_size),
            "sparse raw 8 GiB (64 MiB data)": (sparse, sparse.stat().st_size)}


def drop_target(path: Path) -> None:
    subprocess.run(["rm", "-rf", str(path)], check=False)


def run_vdisk(url: str, out: Path, size: int) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([sys.executable, "-c", CHILD, url, str(out), str(size)], capture_output=True, text=True,
                         cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    data: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    drop_target(out)
    return data


def run_baseline(url: str, work: Path, xz_threads: int = 2) -> float:
    work.mkdir(parents=True, exist_ok=True)
    scratch, disk = work / "scratch.img", work / "disk.img"
    t0 = time.monotonic()
    if url.endswith(".xz"):  # CDI decompresses into scratch while downloading
        subprocess.run(f"curl -sS '{url}' | xz -dc -T{xz_threads} > '{scratch}'", shell=True, check=True)
    else:
        subprocess.run(["curl", "-sS", "-o", str(scratch), url], check=True)
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(scratch), str(disk)], check=True)
    subprocess.run(["sync", str(disk)], check=True)
    dt = time.monotonic() - t0
    drop_target(work)
    return dt


def run_nbdkit(url: str, work: Path) -> float:
    work.mkdir(parents=True, exist_ok=True)
    sock = work / "nbd.sock"
    t0 = time.monotonic()
    proc = subprocess.Popen(["nbdkit", "--exit-with-parent", "--readonly", "--foreground", "-U", str(sock),
                             "curl", f"url={url}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not sock.exists():
            time.sleep(0.01)
        subprocess.run(["qemu-img", "convert", "-O", "raw", f"nbd+unix:///?socket={sock}", str(work / "disk.img")],
                       check=True)
        subprocess.run(["sync", str(work / "disk.img")], check=True)
    finally:
        proc.terminate()
        proc.wait()
    dt = time.monotonic() - t0
    drop_target(work)
    return dt


def run_local_convert(src: Path, work: Path) -> float:
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-t", "none", "-O", "raw", str(src), str(work / "disk.img")], check=True)
    dt = time.monotonic() - t0
    drop_target(work)
    return dt


async def through_api(tmp: Path, qcow_url: str) -> dict[str, float]:
    root = tmp / "root"
    root.mkdir(parents=True)
    vp = start_vdisk(tmp / "data", "--node-name", "bench", "--host-root", str(root))
    out: dict[str, float] = {}
    try:
        async with client_for(vp.url, vp.ca, vp.token, 4) as c:
            path = "/apis/cdi.kubevirt.io/v1beta1/namespaces/default/datavolumes"
            for name, source, size in (("blank10g", {"blank": {}}, "10Gi"),
                                       ("qcow2", {"http": {"url": qcow_url}}, "5Gi")):
                body = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": name},
                        "spec": {"source": source, "storage": {"resources": {"requests": {"storage": size}}}}}
                t0 = time.monotonic()
                r = await c.post(path, json=body)
                r.raise_for_status()
                while True:
                    st = (await c.get(f"{path}/{name}")).json().get("status", {})
                    if st.get("phase") == "Succeeded":
                        break
                    if time.monotonic() - t0 > 600:
                        raise RuntimeError(f"{name} did not finish: {st}")
                    await asyncio.sleep(0.05)
                out[name] = time.monotonic() - t0
                await c.delete(f"{path}/{name}")
    finally:
        vp.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="images a quarter of the size")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vdisk-bench-import-"))
    try:
        www = tmp / "www"
        www.mkdir()
        t0 = time.monotonic()
        images = make_images(www, args.quick)
        print(f"images generated in {time.monotonic() - t0:.1f} s under {www}")
        with nginx(www, tmp / "nginx") as web:
            print(f"{'image':34} {'vdisk (s)':>9} {'route':>7} {'GB/s':>6} {'RSS MB':>7} {'CDI path (s)':>12} "
                  f"{'ratio':>6}")
            peak = 0
            for path, _ in images.values():  # a server that serves images has them in its page cache
                subprocess.run(["curl", "-sS", "-o", "/dev/null", web.url(path.name)], check=True)
            for label, (path, virtual) in images.items():
                url = web.url(path.name)
                ours = run_vdisk(url, tmp / "out", virtual + 64 * MIB)
                base = run_baseline(url, tmp / "base")
                peak = max(peak, ours["rss"], ours["child_rss"])
                print(f"{label:34} {ours['seconds']:9.2f} {ours['route']:>7} {virtual / ours['seconds'] / 1e9:6.2f} "
                      f"{ours['rss'] / 1e6:7.0f} {base:12.2f} {ours['seconds'] / base:6.2f}")
            xz = images["xz raw 1 GiB (512 MiB data)"][0]
            print(f"reference: the xz baseline with one decompression thread (CDI decodes xz in one Go "
                  f"goroutine): {run_baseline(web.url(xz.name), tmp / 'b1', xz_threads=1):.2f} s")
            qcow = images["qcow2 4 GiB (2.5 GiB data)"][0]
            print(f"reference: nbdkit-curl | qemu-img convert, qcow2: {run_nbdkit(web.url(qcow.name), tmp / 'n'):.2f} s; "
                  f"qemu-img convert -t none of the local qcow2: {run_local_convert(qcow, tmp / 'l'):.2f} s")
            print(f"importer peak RSS (Python, or qemu-img/nbdkit children): {peak / 1e6:.0f} MB")
            api = asyncio.run(through_api(tmp / "api", web.url(qcow.name)))
            print(f"through the API (kubectl create -> Succeeded): blank 10Gi DV {api['blank10g']:.2f} s; "
                  f"qcow2 4 GiB DV {api['qcow2']:.2f} s")
    finally:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
