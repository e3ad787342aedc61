"""The upload proxy on the API server's port: checks the upload token and streams to the PVC's upload server.

Upstream: CDI pkg/uploadproxy/uploadproxy.go: paths /v1beta1|v1alpha1/upload[-async|-form|-form-async],
`Authorization: Bearer <token>` (400 when missing or malformed, 401 when invalid or expired), a wait of
up to 10 s for `cdi.kubevirt.io/storage.pod.ready`, 503 with "rejecting Upload Request for PVC %s that
doesn't exist" / "PVC %s is not an upload target" / "... that already finished uploading".
The upload server is found through its pod (`cdi-upload-<pvc>`), which publishes its endpoint in its
progress record; the proxy authenticates to it with the pod's key. Any method is relayed, so vdisk's
resumable protocol (GET status, ranged PUT, PATCH finish) works through the proxy too.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from ..cdi import (
    ANN_POD_PHASE,
    ANN_POD_READY,
    ANN_PROGRESS,
    ANN_UPLOAD_POD,
    ANN_UPLOAD_TARGET,
    upload_pod_name,
)
from ..cdi import UPLOAD_KEY_HEADER as KEY_HEADER
from .uploadtoken import TokenError

if TYPE_CHECKING:
    from .server import APIServer

log = logging.getLogger(__name__)

PATHS = re.compile(r"^/v1(alpha|beta)1/upload(-async|-form|-form-async)?/?$")
BEARER = re.compile(r"(?i)^Bearer\s+([A-Za-z0-9\-\._~\+\/]+=*)$")
FORWARDED = ("Content-Type", "Content-Range", "Content-Length", "X-Vdisk-Upload-Id", "X-Vdisk-Upload-Total")
READY_WAIT = 10.0
CHUNK = 1 << 20
LINGER = 30.0


class ClientGone(Exception):
    pass


def is_upload_path(path: str) -> bool:
    return bool(PATHS.match(path))


def _text(status: int, message: str, retry_after: bool = False) -> web.Response:
    # Retry-After on a 503 tells a client this is a moment's wait (the upload server is starting),
    # not a refusal
    return web.Response(status=status, text=message + "\n", content_type="text/plain",
                        headers={"Retry-After": "2"} if retry_after else None)


def _upstream(server: APIServer, ns: str, pvc: dict[str, Any]) -> tuple[str, str] | None:
    ann = pvc["metadata"].get("annotations") or {}
    pod_name = ann.get(ANN_UPLOAD_POD) or upload_pod_name(pvc["metadata"]["name"])
    pod = server.store.get(("", "pods"), ns, pod_name)
    if pod is None:
        return None
    try:
        endpoint = json.loads((pod["metadata"].get("annotations") or {}).get(ANN_PROGRESS, "{}")).get("endpoint")
    except ValueError:
        endpoint = None
    key = next((e.get("value", "") for c in (pod.get("spec") or {}).get("containers") or []
                for e in c.get("env") or [] if e.get("name") == "UPLOAD_KEY"), "")
    return (str(endpoint), key) if endpoint else None


async def handle(server: APIServer, request: web.Request) -> web.StreamResponse:
    m = BEARER.match(request.headers.get("Authorization", ""))
    if not m:
        return _text(400, "missing or malformed Authorization header: expected 'Bearer <upload token>'")
    try:
        claims = server.upload_tokens.verify(m.group(1))
    except TokenError as exc:
        return _text(400 if exc.bad_request else 401, exc.message)
    ns, name = str(claims.get("namespace")), str(claims.get("name"))
    shown = html.escape(name)  # the name comes from a token request: never echo it raw
    deadline = asyncio.get_running_loop().time() + READY_WAIT
    while True:
        pvc = server.store.get(("", "persistentvolumeclaims"), ns, name)
        if pvc is None:
            return _text(503, f"rejecting Upload Request for PVC {shown} that doesn't exist")
        ann = pvc["metadata"].get("annotations") or {}
        if ANN_UPLOAD_TARGET not in ann:
            return _text(503, f"PVC {shown} is not an upload target")
        if ann.get(ANN_POD_PHASE) == "Succeeded":
            return _text(503, f"rejecting Upload Request for PVC {shown} that already finished uploading")
        upstream = _upstream(server, ns, pvc) if ann.get(ANN_POD_READY) == "true" else None
        if upstream is not None:
            break
        if asyncio.get_running_loop().time() > deadline:
            return _text(503, f"upload server for PVC {html.escape(ns)}/{shown} is not ready", retry_after=True)
        await asyncio.sleep(0.5)
    endpoint, key = upstream
    try:
        return await _relay(request, endpoint, key)
    except ClientGone as exc:
        log.info("upload client went away pvc=%s/%s: %s", ns, name, exc)
        return _text(400, f"the upload stopped early: {exc}")
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        log.warning("upload relay failed pvc=%s/%s error=%s", ns, name, exc)
        return _text(502, f"upload to PVC {html.escape(ns)}/{shown} failed: {exc or type(exc).__name__}")


async def _read_response(reader: asyncio.StreamReader, method: str) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the upload server closed the connection without an answer")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""  # no body, whatever Content-Length says
    n = int(headers.get("content-length", "0"))
    body = await reader.readexactly(n) if n else b""
    return status, headers, body


async def _drain(request: web.Request, limit: float = LINGER) -> None:
    """Read what the client still sends, so it gets our answer instead of a reset (nginx's lingering close)."""
    try:
        async with asyncio.timeout(limit):
            while await request.content.readany():
                pass
    except (TimeoutError, OSError):
        pass


async def _relay(request: web.Request, endpoint: str, key: str) -> web.StreamResponse:
    """Stream the request to the upload server and its answer back (HTTP/1.1, one connection). The
    answer may come before the body is sent (an early refusal): then sending stops."""
    parts = urlsplit(endpoint)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=CHUNK)
    answer = asyncio.create_task(_read_response(reader, request.method))
    try:
        length = request.headers.get("Content-Length")
        chunked = length is None and request.method in ("POST", "PUT", "PATCH") and request.body_exists
        head = [f"{request.method} {request.path_qs} HTTP/1.1", f"Host: {parts.netloc}", f"{KEY_HEADER}: {key}",
                "Connection: close"]
        head += [f"{h}: {request.headers[h]}" for h in FORWARDED if h in request.headers]
        if chunked:
            head.append("Transfer-Encoding: chunked")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        early = False
        if request.body_exists:
            content = request.content
            while not answer.done():
                try:
                    chunk = await content.readany()
                except (OSError, aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
                    # the client went away mid-body: close upstream too, so the upload server keeps
                    # what it has (resumable) and is free for the next request
                    raise ClientGone(str(exc) or type(exc).__name__) from exc
                if not chunk:
                    if length is not None and content.total_bytes < int(length):
                        raise ClientGone("the client sent less than its Content-Length")
                    break
                try:
                    writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
                    if writer.transport.get_write_buffer_size() > 4 * CHUNK:
                        await writer.drain()
                except (RuntimeError, ConnectionError):
                    early = True  # the upload server answered and closed: its answer says why
                    break
            else:
                early = True
            if not early:
                try:
                    if chunked:
                        writer.write(b"0\r\n\r\n")
                    await writer.drain()
                except (RuntimeError, ConnectionError):
                    early = True
        status, headers, body = await answer
        if early or not request.content.at_eof():
            await _drain(request)
        return web.Response(status=status, body=body,
                            content_type=headers.get("content-type", "text/plain").split(";")[0])
    finally:
        if not answer.done():
            answer.cancel()
        writer.close()
