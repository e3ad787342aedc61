"""The node agent's HTTP endpoint (kubelet's :10250 for what vdisk needs): container logs.

Upstream: kubelet `/containerLogs/{namespace}/{pod}/{container}` with follow, tailLines, previous,
limitBytes; the API server proxies `pods/log` to it. Requests must carry the token the agent
published in its Node (`vdisk.io/kubelet-token`).
"""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .agent import NodeAgent


def _tail(data: bytes, lines: int) -> bytes:
    if lines < 0:
        return data
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:]) if lines else b""


class KubeletServer:
    def __init__(self, agent: NodeAgent):
        self.agent = agent
        self._runner: web.AppRunner | None = None

    async def start(self, address: str) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, address, 0)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1])

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authorized(self, request: web.Request) -> bool:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(presented, self.agent.kubelet_token)

    async def logs(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        runner = getattr(self.agent, "pod_runner", None)
        ns, pod, container = request.match_info["ns"], request.match_info["pod"], request.match_info["container"]
        worker = runner.worker_for(ns, pod) if runner else None
        pod_obj = runner.pods.get(ns, pod) if runner else None
        if pod_obj is None:
            return web.Response(status=404, text=f'pods "{pod}" not found')
        uid = pod_obj["metadata"]["uid"]
        base = self.agent.data_dir / "pods" / uid / "logs" / container
        restarts = sorted((int(p.stem) for p in base.glob("*.log")), reverse=True) if base.is_dir() else []
        previous = request.query.get("previous") in ("true", "1")
        if not restarts or (previous and len(restarts) < 2):
            status = ((pod_obj.get("status") or {}).get("containerStatuses") or [])
            waiting = next((((s.get("state") or {}).get("waiting") or {}).get("reason") for s in status
                            if s.get("name") == container), None) or "ContainerCreating"
            what = "previous terminated container" if previous else "container"
            return web.Response(status=400, text=f'{what} "{container}" in pod "{pod}" is waiting to start: '
                                                 f'{waiting}' if not previous else
                                f'previous terminated container "{container}" in pod "{pod}" not found')
        path = base / f"{restarts[1] if previous else restarts[0]}.log"
        tail = int(request.query.get("tailLines", "-1") or -1)
        limit = int(request.query.get("limitBytes", "0") or 0)
        data = _tail(path.read_bytes(), tail)
        if limit:
            data = data[:limit]
        follow = request.query.get("follow") in ("true", "1") and not previous
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(data)
        if follow:
            await self._follow(resp, path, path.stat().st_size, worker, container)
        return resp

    async def _follow(self, resp: web.StreamResponse, path: Path, offset: int, worker: object,
                      container: str) -> None:
        idle = 0
        while True:
            size = path.stat().st_size if path.exists() else offset
            if size > offset:
                with path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read(size - offset)
                offset = size
                idle = 0
                try:
                    await resp.write(chunk)
                except (ConnectionResetError, RuntimeError):
                    return
                continue
            procs = getattr(worker, "procs", {}) if worker is not None else {}
            if container not in procs:
                idle += 1
                if idle > 3:
                    return
            await asyncio.sleep(0.2)
