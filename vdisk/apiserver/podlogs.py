"""`pods/log`: the API server proxies to the kubelet endpoint of the pod's node.

Upstream: k8s pkg/registry/core/pod/rest/log.go (LogLocation) and the container name rules
("a container name must be specified for pod X, choose one of: [a b]").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from . import errors

if TYPE_CHECKING:
    from .server import APIServer

Obj = dict[str, Any]
ANN_KUBELET_TOKEN = "vdisk.io/kubelet-token"


def _container(pod: Obj, requested: str | None) -> str:
    spec = pod.get("spec") or {}
    names = [c["name"] for c in spec.get("containers") or []]
    init = [c["name"] for c in spec.get("initContainers") or []]
    name = pod["metadata"]["name"]
    if requested:
        if requested not in names + init:
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(names) == 1:
        return names[0]
    default = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    if default in names:
        return str(default)
    raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                             f"[{' '.join(names)}]" + (f" or one of the init containers: [{' '.join(init)}]"
                                                       if init else ""))


async def proxy_pod_log(server: APIServer, request: web.Request, pod: Obj) -> web.StreamResponse:
    container = _container(pod, request.query.get("container"))
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
    node = server.store.get(("", "nodes"), "", node_name)
    if node is None:
        raise errors.not_found("", "nodes", node_name)
    status = node.get("status") or {}
    address = next((a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    token = (node["metadata"].get("annotations") or {}).get(ANN_KUBELET_TOKEN, "")
    if not address or not port:
        raise errors.APIError(503, "ServiceUnavailable", f"node {node_name} has no kubelet endpoint")
    params = {k: v for k, v in request.query.items() if k in ("follow", "tailLines", "previous", "limitBytes",
                                                              "timestamps", "sinceSeconds")}
    url = f"http://{address}:{port}/containerLogs/{ns}/{name}/{container}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url, params=params, headers={"Authorization": f"Bearer {token}"}) as upstream:
            if upstream.status != 200:
                text = await upstream.text()
                raise errors.APIError(upstream.status if upstream.status in (400, 404) else 502,
                                      "BadRequest" if upstream.status == 400 else "NotFound" if upstream.status == 404
                                      else "InternalError", text.strip())
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            return resp
    except aiohttp.ClientError as exc:
        raise errors.APIError(502, "InternalError", f"cannot reach node {node_name} for logs: {exc}") from exc
