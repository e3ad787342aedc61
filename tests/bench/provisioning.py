"""Provisioning benchmark: claim -> Bound for Immediate and WaitForFirstConsumer claims, and deletion.

Runs a real `vdisk up` (its own host root in a temp dir) and, as the baseline, the raw cost of the same
host operations in a loop: mkdir for Filesystem volumes; truncate + `losetup -f` (+ detach) for Block.

    python -m tests.bench.provisioning [--claims 500] [--block 100] [--pods 500]
"""

from __future__ import annotations

import argparse
import asyncio
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

Obj = dict[str, Any]


def claim(name: str, cls: str, mode: str = "Filesystem") -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}},
                     "storageClassName": cls, "volumeMode": mode}}


def pause_pod(name: str, claim_name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                                     "volumeMounts": [{"name": "v", "mountPath": "/data"}]}],
                     "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim_name}}]}}


async def create_all(c: Any, path: str, objs: list[Obj], concurrency: int = 20) -> None:
    it = iter(objs)

    async def worker() -> None:
        for o in it:
            r = await c.post(path, json=o)
            if r.status_code != 201:
                raise RuntimeError(r.text)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def wait_count(c: Any, path: str, predicate: Any, want: int, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        items = (await c.get(path)).json()["items"]
        if sum(1 for o in items if predicate(o)) >= want:
            return time.perf_counter() - t0
        await asyncio.sleep(0.1)
    raise TimeoutError(path)


def bound(o: Obj) -> bool:
    return bool((o.get("status") or {}).get("phase") == "Bound")


async def scenario(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    root = tmp / "root"
    root.mkdir()
    vp = start_vdisk(tmp / "data", "--node-name", "bench", "--host-root", str(root))
    out: dict[str, float] = {}
    try:
        async with client_for(vp.url, vp.ca, vp.token, 20) as c:
            ns = "/api/v1/namespaces/default"
            await c.post("/apis/storage.k8s.io/v1/storageclasses", json={
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "wffc"},
                "provisioner": "kubevirt.io.hostpath-provisioner", "parameters": {"storagePool": "local"},
                "volumeBindingMode": "WaitForFirstConsumer"})
            t0 = time.perf_counter()
            await create_all(c, f"{ns}/persistentvolumeclaims", [claim(f"i{n}", "local") for n in range(args.claims)])
            await wait_count(c, f"{ns}/persistentvolumeclaims", bound, args.claims)
            out["immediate_fs_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            await create_all(c, f"{ns}/persistentvolumeclaims",
                             [claim(f"b{n}", "local-block", "Block") for n in range(args.block)])
            await wait_count(c, f"{ns}/persistentvolumeclaims", bound, args.claims + args.block)
            out["immediate_block_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            await create_all(c, f"{ns}/persistentvolumeclaims", [claim(f"w{n}", "wffc") for n in range(args.pods)])
            await create_all(c, f"{ns}/pods", [pause_pod(f"p{n}", f"w{n}") for n in range(args.pods)])
            await wait_count(c, f"{ns}/persistentvolumeclaims", bound, args.claims + args.block + args.pods)
            out["wffc_with_pods_bound_s"] = time.perf_counter() - t0
            await wait_count(c, f"{ns}/pods", lambda o: (o.get("status") or {}).get("phase") == "Running", args.pods)
            out["wffc_pods_running_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            await c.delete(f"{ns}/pods")
            while (await c.get(f"{ns}/pods")).json()["items"]:
                await asyncio.sleep(0.1)
            await c.delete(f"{ns}/persistentvolumeclaims")
            while (await c.get("/api/v1/persistentvolumes")).json()["items"]:
                await asyncio.sleep(0.1)
            out["delete_all_s"] = time.perf_counter() - t0
            left = list((root / "var" / "lib" / "vdisk" / "pools" / "local" / "csi").glob("pvc-*"))
            out["dirs_left"] = float(len(left))
    finally:
        vp.stop()
    return out


def baseline(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    base = tmp / "raw"
    base.mkdir()
    t0 = time.perf_counter()
    for n in range(args.claims):
        d = base / f"pvc-{n}"
        d.mkdir()
        d.chmod(0o777)
    fs = time.perf_counter() - t0
    t0 = time.perf_counter()
    devs = []
    for n in range(args.block):
        d = base / f"blk-{n}"
        d.mkdir()
        f = d / "block.img"
        with f.open("wb") as fh:
            fh.truncate(16 * 1024 * 1024)
        devs.append(subprocess.run(["losetup", "-f", "--show", str(f)], check=True, capture_output=True,
                                   text=True).stdout.strip())
    block = time.perf_counter() - t0
    t0 = time.perf_counter()
    for dev in devs:
        subprocess.run(["losetup", "-d", dev], check=True)
    subprocess.run(["rm", "-rf", str(base)], check=True)
    delete = time.perf_counter() - t0
    return {"immediate_fs_s": fs, "immediate_block_s": block, "delete_all_s": delete}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--claims", type=int, default=500)
    p.add_argument("--block", type=int, default=100)
    p.add_argument("--pods", type=int, default=500)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vdisk-bench-prov-"))
    ours = asyncio.run(scenario(args, tmp))
    raw = baseline(args, tmp)
    print(f"provisioning benchmark: {args.claims} Filesystem + {args.block} Block Immediate claims, {args.pods} "
          f"WFFC claims with pods; CPUs={os.cpu_count()}")
    print(f"{'metric':40} {'vdisk (s)':>10} {'raw (s)':>10} {'ratio':>8}")
    for key, label in (("immediate_fs_s", f"{args.claims} Filesystem claims -> Bound"),
                       ("immediate_block_s", f"{args.block} Block claims -> Bound"),
                       ("wffc_with_pods_bound_s", f"{args.pods} WFFC claims + pods -> Bound"),
                       ("wffc_pods_running_s", f"{args.pods} pods -> Running"),
                       ("delete_all_s", "delete all pods, claims, volumes")):
        r = raw.get(key)
        if r is not None:
            print(f"{label:40} {ours[key]:10.2f} {r:10.3f} {ours[key] / r:8.1f}")
        else:
            print(f"{label:40} {ours[key]:10.2f} {'-':>10} {'-':>8}")
    print(f"volume directories left after deletion: {int(ours['dirs_left'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
