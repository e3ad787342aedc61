"""Upload benchmark: vdisk's upload beside nginx PUT (`curl -T` + fsync), same files, one run.

    TLS     virtctl's uploader -> the upload proxy (vdisk's API server, HTTPS) -> the upload server pod
    plain   the uploader -> an upload server process over plain HTTP (the hop the proxy makes)
    baseline nginx with `dav_methods PUT`: `curl -T FILE URL` (+ --cacert for HTTPS), then `sync FILE`

Files: a 4 GiB raw full of data, a 16 GiB raw with 256 MiB of data (vdisk sends the data extents only),
and a 2 GiB raw with 1 GiB of data compressed with xz (vdisk decompresses into the volume; the
reference is `xz -dc` of the file to /dev/null). Every vdisk figure is to a durable disk (the upload
answers once the data is on disk). Also: the peak RSS of the uploading client and of the upload server.

    python -m tests.bench.upload [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.apiserver import client_for  # noqa: E402
from tests.bench.importer import write_disk_like  # noqa: E402
from tests.conftest import start_vdisk  # noqa: E402
from tests.servers import MIB, free_port, make_ca, stop, wait_port, write_pattern  # noqa: E402

GIB = 1024 * MIB

CLIENT = """
import json, resource, sys, time
from pathlib import Path
from vdisk.dataplane.uploadclient import Uploader
url, token, path = sys.argv[1], sys.argv[2], Path(sys.argv[3])
ca = sys.argv[4] if len(sys.argv) > 4 else None
t0 = time.monotonic()
stats = Uploader(url, lambda refresh: token, ca_file=ca,
                 headers={"X-Vdisk-Upload-Key": "bench-key"}).upload(path, retries=0)
dt = time.monotonic() - t0
print(json.dumps({"seconds": dt, "sent": stats.sent,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def client(url: str, token: str, path: Path, ca: Path | None = None) -> dict[str, Any]:
    args = [sys.executable, "-c", CLIENT, url, token, str(path)] + ([str(ca)] if ca else [])
    res = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def nginx_put(tmp: Path) -> tuple[subprocess.Popen[bytes], int, int, Path, Path]:
    """nginx accepting PUT into tmp/put over HTTP and HTTPS; returns (proc, http port, https port, CA, dir)."""
    work = tmp / "nginx"
    work.mkdir()
    root = tmp / "put"
    root.mkdir()
    ca = make_ca(work / "pki")
    http, https = free_port(), free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(f"""
daemon off; {user}
worker_processes 2; pid {work}/nginx.pid; error_log {work}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off; client_body_temp_path {root}/.tmp; client_max_body_size 0;
    client_body_buffer_size 1m; sendfile on; root {root};
    server {{ listen 127.0.0.1:{http}; location / {{ dav_methods PUT; create_full_put_path on; }} }}
    server {{ listen 127.0.0.1:{https} ssl; ssl_certificate {ca.server_cert}; ssl_certificate_key {ca.server_key};
              location / {{ dav_methods PUT; create_full_put_path on; }} }}
}}
""")
    (root / ".tmp").mkdir()
    log = work / "out.log"
    proc = subprocess.Popen(["nginx", "-p", str(work), "-c", str(work / "nginx.conf")], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    wait_port(http, proc, log)
    wait_port(https, proc, log)
    return proc, http, https, ca.cert, root


def curl_put(url: str, path: Path, dest: Path, ca: Path | None = None) -> float:
    t0 = time.monotonic()
    cmd = ["curl", "-sS", "-f", "-T", str(path), url] + (["--cacert", str(ca)] if ca else [])
    subprocess.run(cmd, check=True, capture_output=True)
    subprocess.run(["sync", str(dest)], check=True)
    dt = time.monotonic() - t0
    dest.unlink()
    return dt


def upload_server(tmp: Path, size: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    """An upload server process on a temp directory (the bench talks to it directly, with its key)."""
    d = Path(tempfile.mkdtemp(prefix="upsrv-", dir=tmp))
    (d / "data").mkdir()
    (d / "scratch").mkdir()
    env = {**os.environ, "UPLOAD_TARGET": str(d / "data"), "UPLOAD_SCRATCH": str(d / "scratch"),
           "UPLOAD_IMAGE_SIZE": str(size), "VDISK_PROGRESS_FILE": str(d / "progress"), "UPLOAD_KEY": "bench-key"}
    proc = subprocess.Popen([sys.executable, "-m", "vdisk.worker", "uploadserver"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=(d / "log").open("wb"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            endpoint = json.loads((d / "progress").read_text()).get("endpoint")
            if endpoint:
                return proc, str(endpoint), d
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError("upload server did not start")


def server_rss(proc: subprocess.Popen[bytes]) -> int:
    proc.wait(30)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


async def prepare_dv(c: Any, name: str, size: str) -> str:
    path = "/apis/cdi.kubevirt.io/v1beta1/namespaces/default/datavolumes"
    r = await c.post(path, json={"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                                 "metadata": {"name": name},
                                 "spec": {"source": {"upload": {}},
                                          "storage": {"resources": {"requests": {"storage": size}}}}})
    r.raise_for_status()
    while (await c.get(f"{path}/{name}")).json().get("status", {}).get("phase") != "UploadReady":
        await asyncio.sleep(0.1)
    tok = await c.post("/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/default/uploadtokenrequests",
                       json={"apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
                             "metadata": {"name": name}, "spec": {"pvcName": name}})
    return str(tok.json()["status"]["token"])


async def wait_succeeded(c: Any, name: str) -> None:
    path = f"/apis/cdi.kubevirt.io/v1beta1/namespaces/default/datavolumes/{name}"
    while (await c.get(path)).json().get("status", {}).get("phase") != "Succeeded":
        await asyncio.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="files a quarter of the size")
    args = ap.parse_args(argv)
    scale = 4 if args.quick else 1
    tmp = Path(tempfile.mkdtemp(prefix="vdisk-bench-upload-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        full, sparse, xzraw = tmp / "full.raw", tmp / "sparse.raw", tmp / "xz.raw"
        write_pattern(full, 4 * GIB // scale, [(0, 4 * GIB // scale)], seed=11)
        step = 16 * GIB // scale // 64
        write_pattern(sparse, 16 * GIB // scale, [(i * step, 4 * MIB) for i in range(64)], seed=12)
        write_disk_like(xzraw, 2 * GIB // scale, [(0, GIB // scale)])
        subprocess.run(["xz", "-0", "-T2", "-f", str(xzraw)], check=True)
        xzfile = tmp / "xz.raw.xz"
        ngx, http, https, ca, put = nginx_put(tmp)
        procs.append(ngx)
        size = full.stat().st_size
        print(f"{'upload':44} {'vdisk (s)':>9} {'GB/s':>6} {'baseline (s)':>12} {'GB/s':>6} {'x baseline':>10}")

        def row(label: str, ours: float, base: float | None, nbytes: int) -> None:
            b = f"{base:12.2f} {nbytes / base / 1e9:6.2f} {base / ours:10.2f}" if base else f"{'-':>12} {'-':>6} {'-':>10}"
            print(f"{label:44} {ours:9.2f} {nbytes / ours / 1e9:6.2f} {b}")

        # plain HTTP: straight to an upload server process
        srv, endpoint, _ = upload_server(tmp, size + GIB)
        plain = client(endpoint, "", full)
        srss = server_rss(srv)
        row(f"{size // GIB} GiB data raw, plain HTTP", plain["seconds"], curl_put(f"http://127.0.0.1:{http}/f",
                                                                                 full, put / "f"), size)
        # TLS through the API server's upload proxy into an upload DV
        vp = start_vdisk(tmp / "vd", "--node-name", "bench", "--host-root", str(tmp / "root"))
        try:
            async def run_api() -> dict[str, Any]:
                out: dict[str, Any] = {}
                async with client_for(vp.url, vp.ca, vp.token, 4) as c:
                    tok = await prepare_dv(c, "full", f"{size // MIB + 64}Mi")
                    res = client(vp.url, tok, full, vp.ca)
                    t0 = time.monotonic()
                    await wait_succeeded(c, "full")
                    out["full"] = res
                    out["full_succeeded_after"] = time.monotonic() - t0
                    tok = await prepare_dv(c, "sparse", f"{sparse.stat().st_size // MIB + 64}Mi")
                    out["sparse"] = client(vp.url, tok, sparse, vp.ca)
                    tok = await prepare_dv(c, "xz", f"{2 * GIB // scale // MIB + 64}Mi")
                    out["xz"] = client(vp.url, tok, xzfile, vp.ca)
                return out

            (tmp / "root").mkdir(exist_ok=True)
            api = asyncio.run(run_api())
        finally:
            vp.stop()
        row(f"{size // GIB} GiB data raw, HTTPS via the upload proxy", api["full"]["seconds"],
            curl_put(f"https://127.0.0.1:{https}/f", full, put / "f", ca), size)
        sp = sparse.stat().st_size
        row(f"{sp // GIB} GiB sparse raw (256 MiB data), HTTPS", api["sparse"]["seconds"],
            curl_put(f"http://127.0.0.1:{http}/s", sparse, put / "s"), sp)
        t0 = time.monotonic()
        subprocess.run(f"xz -dc -T0 {xzfile} > /dev/null", shell=True, check=True)
        xz_ref = time.monotonic() - t0
        row(f"{2 // scale if scale == 1 else 0.5} GiB raw, 1/2 data, xz, HTTPS (ref: xz -dc)", api["xz"]["seconds"],
            xz_ref, 2 * GIB // scale)
        print(f"sparse upload sent {api['sparse']['sent'] // MIB} MiB of {sp // MIB} MiB")
        print(f"DV Succeeded {api['full_succeeded_after']:.2f} s after the upload answered")
        print(f"peak RSS: client {max(plain['rss'], api['full']['rss']) / 1e6:.0f} MB, "
              f"upload server {srss / 1e6:.0f} MB")
    finally:
        for p in procs:
            stop(p)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
