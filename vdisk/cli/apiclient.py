"""A small synchronous Kubernetes API client for the CLI, configured from a kubeconfig as kubectl is.

`--kubeconfig`, else $KUBECONFIG (the first file that exists), else ~/.kube/config; the current
context unless `--context`; bearer tokens, client certificates, CA data or files, and
insecure-skip-tls-verify.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

Obj = dict[str, Any]


class ConfigError(Exception):
    pass


class APIError(Exception):
    def __init__(self, code: int, message: str, reason: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason


def kubeconfig_path(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("KUBECONFIG")
    if env:
        for part in env.split(os.pathsep):
            if part and Path(part).expanduser().exists():
                return Path(part).expanduser()
    return Path.home() / ".kube" / "config"


def _materialize(data_b64: str | None, path: str | None, base: Path) -> str | None:
    if data_b64:
        f = tempfile.NamedTemporaryFile(prefix="vdisk-kube-", delete=False)
        f.write(base64.b64decode(data_b64))
        f.close()
        return f.name
    if path:
        p = Path(path)
        return str(p if p.is_absolute() else base / p)
    return None


@dataclass
class Connection:
    server: str
    ssl: ssl.SSLContext | bool
    headers: dict[str, str]
    insecure: bool = False
    ca_file: str | None = None


def load_connection(kubeconfig: str | None = None, context: str | None = None) -> Connection:
    path = kubeconfig_path(kubeconfig)
    if not path.exists():
        raise ConfigError(f"no kubeconfig found at {path}: set --kubeconfig or KUBECONFIG")
    cfg = yaml.safe_load(path.read_text()) or {}
    ctx_name = context or cfg.get("current-context")
    ctx = next((c.get("context") or {} for c in cfg.get("contexts") or [] if c.get("name") == ctx_name), None)
    if ctx is None:
        raise ConfigError(f'context "{ctx_name}" not found in {path}')
    cluster = next((c.get("cluster") or {} for c in cfg.get("clusters") or [] if c.get("name") == ctx.get("cluster")),
                   {})
    user = next((u.get("user") or {} for u in cfg.get("users") or [] if u.get("name") == ctx.get("user")), {})
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"cluster of context {ctx_name} has no server in {path}")
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    ca = _materialize(cluster.get("certificate-authority-data"), cluster.get("certificate-authority"), path.parent)
    sslctx = ssl.create_default_context(cafile=ca) if ca and not insecure else ssl.create_default_context()
    if insecure:
        sslctx.check_hostname = False
        sslctx.verify_mode = ssl.CERT_NONE
    cert = _materialize(user.get("client-certificate-data"), user.get("client-certificate"), path.parent)
    key = _materialize(user.get("client-key-data"), user.get("client-key"), path.parent)
    if cert and key:
        sslctx.load_cert_chain(cert, key)
    headers = {}
    token = user.get("token") or (Path(user["tokenFile"]).read_text().strip() if user.get("tokenFile") else None)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return Connection(server.rstrip("/"), sslctx, headers, insecure, ca)


class API:
    def __init__(self, conn: Connection):
        self.conn = conn
        self.http = httpx.Client(base_url=conn.server, verify=conn.ssl, headers=conn.headers, timeout=30)

    def close(self) -> None:
        self.http.close()

    def _check(self, r: httpx.Response) -> Obj:
        if r.status_code >= 400:
            try:
                body = r.json()
                raise APIError(r.status_code, body.get("message", r.text), body.get("reason", ""))
            except ValueError:
                raise APIError(r.status_code, r.text.strip()) from None
        result: Obj = r.json() if r.content else {}
        return result

    def get(self, path: str) -> Obj | None:
        r = self.http.get(path)
        if r.status_code == 404:
            return None
        return self._check(r)

    def create(self, path: str, obj: Obj) -> Obj:
        return self._check(self.http.post(path, json=obj))

    def patch(self, path: str, patch: Obj) -> Obj:
        return self._check(self.http.patch(path, json=patch,
                                           headers={"Content-Type": "application/merge-patch+json"}))

    def delete(self, path: str) -> None:
        r = self.http.delete(path)
        if r.status_code != 404:
            self._check(r)

    def list(self, path: str, **params: str) -> list[Obj]:
        items: list[Obj] = self._check(self.http.get(path, params=params)).get("items") or []
        return items
