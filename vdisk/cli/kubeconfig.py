"""Kubeconfig files: the one vdisk writes under its data dir, and merging a `vdisk` context into the
user's (kind/k3d style), so plain `kubectl` works right after `vdisk up`.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
CONTEXT = "vdisk"


def build(server_url: str, ca_pem: bytes, token: str, name: str = CONTEXT, user: str = "vdisk-admin") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server_url,
                                                "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user, "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }


def write(path: Path, config: Obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    os.replace(tmp, path)


def _upsert(items: list[Obj], entry: Obj) -> list[Obj]:
    return [i for i in items if i.get("name") != entry["name"]] + [entry]


def user_kubeconfig_path() -> Path:
    """$KUBECONFIG's first entry, else ~/.kube/config (kubectl's own precedence for writes)."""
    env = os.environ.get("KUBECONFIG")
    if env:
        first = next((p for p in env.split(os.pathsep) if p), None)
        if first:
            return Path(first).expanduser()
    return Path.home() / ".kube" / "config"


def merge_into(path: Path, config: Obj, make_current: bool = True) -> None:
    existing: Obj = {}
    if path.exists():
        existing = yaml.safe_load(path.read_text()) or {}
    merged = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": list(existing.get("clusters") or []),
        "users": list(existing.get("users") or []),
        "contexts": list(existing.get("contexts") or []),
        "current-context": existing.get("current-context", ""),
        "preferences": existing.get("preferences") or {},
    }
    for key in ("clusters", "users", "contexts"):
        for entry in config[key]:
            merged[key] = _upsert(merged[key], entry)
    if make_current:
        merged["current-context"] = config["current-context"]
    for k, v in existing.items():
        merged.setdefault(k, v)
    write(path, merged)


def load(path: Path) -> Obj:
    return yaml.safe_load(path.read_text()) or {}
