"""API server benchmark: create/get latency under concurrency, big lists, watch fan-out, memory.

Runs a real `vdisk apiserver` (HTTPS, bearer token) and, as the baseline, the HTTP floor on this
machine: an aiohttp HTTPS server that answers every request with a canned body of the same size,
so the ratio shows what the API server's own work costs on top of TLS + HTTP + the client.
Targets (issue 2, 2-core machine): create p99 < 20 ms at 20 concurrent clients, list of 10,000
objects < 1 s, one change to 100 watchers < 50 ms p99, RSS < 300 MB with 10,000 objects.

    python -m tests.bench.apiserver [--objects 10000] [--clients 20] [--watchers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import VdiskProcess, start_vdisk  # noqa: E402

DV_TEMPLATE = {
    "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
    "metadata": {"name": "", "labels": {"bench": "yes"}},
    "spec": {"source": {"blank": {}},
             "pvc": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


WRK_SCRIPT = r"""
local counter = 0
local names = tonumber(os.getenv("BENCH_NAMES"))
local mode = os.getenv("BENCH_MODE")
local base = os.getenv("BENCH_PATH")
local prefix = os.getenv("BENCH_PREFIX")
local template = os.getenv("BENCH_BODY")
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  if mode == "create" then
    local body = string.gsub(template, "NAME", string.format("%s%06d", prefix, counter))
    return wrk.format("POST", base, nil, body)
  end
  -- wrk calls request() once at start-up without sending it, so creates begin at 2
  return wrk.format("GET", base .. "/" .. string.format("%s%06d", prefix, counter % names + 2))
end
response = function(status, headers, body)
  if status >= 300 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
  end
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.3f %.3f %d %d\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000,
                         summary.requests, summary.errors.status))
end
"""


def wrk(url: str, token: str, mode: str, path: str, seconds: float, clients: int, workdir: Path,
        prefix: str = "dv-", names: int = 1) -> tuple[float, float, int]:
    """p50/p99 latency (ms) and request count over `seconds` from `clients` keep-alive connections (wrk, C)."""
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    body = json.dumps({**DV_TEMPLATE, "metadata": {**DV_TEMPLATE["metadata"], "name": "NAME"}})
    env = {**os.environ, "BENCH_NAMES": str(names), "BENCH_MODE": mode, "BENCH_PATH": path, "BENCH_BODY": body,
           "BENCH_TOKEN": token, "BENCH_PREFIX": prefix}
    res = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", "10s", "-s", str(script), url],
                         capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT")), None)
    if line is None or "unexpected status" in res.stderr:
        raise RuntimeError(f"wrk failed: {res.stdout}\n{res.stderr[:2000]}")
    _, p50, p99, n, _ = line.split()
    return float(p50), float(p99), int(n)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def client_for(url: str, ca: Path | None, token: str, concurrency: int) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return httpx.AsyncClient(base_url=url, verify=ctx, headers={"Authorization": f"Bearer {token}"}, timeout=120,
                             limits=httpx.Limits(max_connections=concurrency + 110,
                                                 max_keepalive_connections=concurrency + 110))


async def watch_fanout(vp: VdiskProcess, ns: str, watchers: int, rounds: int) -> list[float]:
    """Latency from a PATCH returning to each of `watchers` streams receiving the change."""
    client = client_for(vp.url, vp.ca, vp.token, watchers)
    delays: list[float] = []
    created = (await client.post(f"/api/v1/namespaces/{ns}/configmaps",
                                 json={"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": "fanout"}})).json()
    rv = created["metadata"]["resourceVersion"]
    received: dict[str, list[float]] = {}
    ready = asyncio.Event()
    opened = 0

    async def watch() -> None:
        nonlocal opened
        async with client.stream("GET", f"/api/v1/namespaces/{ns}/configmaps",
                                 params={"watch": "true", "resourceVersion": rv,
                                         "fieldSelector": "metadata.name=fanout"}) as r:
            opened += 1
            if opened == watchers:
                ready.set()
            async for line in r.aiter_lines():
                if line:
                    ev = json.loads(line)
                    received.setdefault(ev["object"]["metadata"]["resourceVersion"], []).append(time.perf_counter())

    tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
    await asyncio.wait_for(ready.wait(), 30)
    await asyncio.sleep(0.2)
    for i in range(rounds):
        t0 = time.perf_counter()
        r = await client.patch(f"/api/v1/namespaces/{ns}/configmaps/fanout",
                               content=json.dumps({"data": {"round": str(i)}}),
                               headers={"Content-Type": "application/merge-patch+json"})
        new_rv = r.json()["metadata"]["resourceVersion"]
        deadline = time.monotonic() + 5
        while len(received.get(new_rv, [])) < watchers and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        delays.extend((t - t0) * 1000 for t in received.get(new_rv, []))
        await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.aclose()
    return delays


FLOOR_SERVER = r'''
import asyncio, ssl, sys
from aiohttp import web
body = sys.stdin.buffer.read()
async def h(request):
    await request.read()
    return web.Response(body=body, status=201 if request.method == "POST" else 200, content_type="application/json")
app = web.Application()
app.router.add_route("*", "/{tail:.*}", h)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
async def main():
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx); await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
import uvloop; uvloop.install(); asyncio.run(main())
'''


def start_floor(vp: VdiskProcess, body: bytes) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(vp.data_dir / "pki" / "server.crt"),
                             str(vp.data_dir / "pki" / "server.key")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin and proc.stdout
    proc.stdin.write(body)
    proc.stdin.close()
    port = int(proc.stdout.readline())
    return proc, f"https://127.0.0.1:{port}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vdisk-bench-"))
    vp = start_vdisk(tmp / "data", command="apiserver")
    results: dict[str, Any] = {}
    try:
        ns = "bench"
        async with client_for(vp.url, vp.ca, vp.token, args.clients) as c:
            await c.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            base = f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes"

            results["create_p50_ms"], results["create_p99_ms"], n = wrk(
                vp.url, vp.token, "create", base, args.seconds, args.clients, tmp)
            results["create_count"] = n
            # top up to exactly --objects for the list and memory figures
            have = len((await c.get(base)).json()["items"])
            for i in range(have, args.objects):
                body = json.loads(json.dumps(DV_TEMPLATE))
                body["metadata"]["name"] = f"fill-{i:06d}"
                r = await c.post(base, json=body)
                assert r.status_code == 201, r.text
            results["get_p50_ms"], results["get_p99_ms"], _ = wrk(
                vp.url, vp.token, "get", base, args.seconds, args.clients, tmp, names=min(n, args.objects) - 1)
            sample = (await c.get(f"{base}/dv-000002")).content
            for fmt, accept in (("json", "application/json"),
                                ("table", "application/json;as=Table;v=v1;g=meta.k8s.io")):
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    r = await c.get(base, headers={"Accept": accept})
                    n = len(r.json()["items" if fmt == "json" else "rows"])
                    times.append(time.perf_counter() - t0)
                assert n == args.objects, n
                results[f"list_{fmt}_s"] = statistics.median(times)
            results["rss_mb"] = rss_mb(vp.proc.pid)
        delays = await watch_fanout(vp, ns, args.watchers, args.rounds)
        results["watch_p50_ms"], results["watch_p99_ms"] = pct(delays, 50), pct(delays, 99)
        results["watch_delivered"] = len(delays)
        # baseline: the same client against the HTTP floor
        floor, floor_url = start_floor(vp, sample)
        try:
            results["floor_create_p50_ms"], results["floor_create_p99_ms"], _ = wrk(
                floor_url, vp.token, "create", base, args.seconds, args.clients, tmp)
            results["floor_get_p50_ms"], results["floor_get_p99_ms"], _ = wrk(
                floor_url, vp.token, "get", base, args.seconds, args.clients, tmp, names=1000)
        finally:
            floor.terminate()
            floor.wait()
    finally:
        vp.stop()
    return results


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"apiserver benchmark: {args.objects} DataVolumes, {args.clients} concurrent clients, "
             f"{args.watchers} watchers, CPUs={os.cpu_count()}",
             f"{'metric':38} {'vdisk':>10} {'floor':>10} {'ratio':>7} {'target':>10}"]

    def row(name: str, ours: float, floor: float | None, target: str) -> None:
        ratio = f"{ours / floor:.2f}" if floor else "-"
        lines.append(f"{name:38} {ours:10.2f} {floor if floor is not None else '-':>10} {ratio:>7} {target:>10}"
                     if floor is None else f"{name:38} {ours:10.2f} {floor:10.2f} {ratio:>7} {target:>10}")

    row("create p50 (ms)", r["create_p50_ms"], r["floor_create_p50_ms"], "")
    row("create p99 (ms)", r["create_p99_ms"], r["floor_create_p99_ms"], "< 20")
    row("get p50 (ms)", r["get_p50_ms"], r["floor_get_p50_ms"], "")
    row("get p99 (ms)", r["get_p99_ms"], r["floor_get_p99_ms"], "")
    row(f"list {args.objects} JSON (s)", r["list_json_s"], None, "< 1")
    row(f"list {args.objects} Table (s)", r["list_table_s"], None, "< 1")
    row(f"watch delivery p50 (ms, {args.watchers} watchers)", r["watch_p50_ms"], None, "")
    row(f"watch delivery p99 (ms, {args.watchers} watchers)", r["watch_p99_ms"], None, "< 50")
    row(f"RSS with {args.objects} objects (MB)", r["rss_mb"], None, "< 300")
    row(f"creates in {args.seconds:g} s (count)", r["create_count"], None, "")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--objects", type=int, default=10000)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--seconds", type=int, default=3, help="duration of each wrk phase")
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(run(args))
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
