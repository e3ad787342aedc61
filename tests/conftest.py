"""Shared fixtures: a real `vdisk` process on an ephemeral port, and the real kubectl pointed at it."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "data" / "examples"  # the seed's manifests, verbatim
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")


def kubectl_binaries() -> list[str]:
    """The dispatcher (`kubectl` on PATH, which picks kubectl.1.32 for our /version) and kubectl 1.30."""
    out = []
    if shutil.which("kubectl"):
        out.append(shutil.which("kubectl") or "kubectl")
    if (KUBECTL_DIR / "kubectl.1.30").exists():
        out.append(str(KUBECTL_DIR / "kubectl.1.30"))
    return out


@dataclass
class VdiskProcess:
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    kubeconfig: Path = field(init=False)
    url: str = ""
    token: str = ""
    ca: Path = field(init=False)

    def __post_init__(self) -> None:
        self.kubeconfig = self.data_dir / "kubeconfig"
        self.ca = self.data_dir / "pki" / "ca.crt"

    def load(self) -> None:
        kc = yaml.safe_load(self.kubeconfig.read_text())
        self.url = kc["clusters"][0]["cluster"]["server"]
        self.token = kc["users"][0]["user"]["token"]

    def http(self, token: str | None = None) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        headers = {"Authorization": f"Bearer {self.token if token is None else token}"} if token != "" else {}
        return httpx.Client(base_url=self.url, verify=ctx, headers=headers, timeout=30)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_vdisk(data_dir: Path, *extra: str, command: str = "up", env: dict[str, str] | None = None,
                timeout: float = 60) -> VdiskProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = data_dir / "kubeconfig"
    if kubeconfig.exists():
        kubeconfig.unlink()
    log_path = data_dir / f"vdisk-{int(time.time() * 1000)}.log"
    args = [sys.executable, "-m", "vdisk.cli.main", command, "--data-dir", str(data_dir), "--listen",
            "127.0.0.1:0", *extra]
    if "--merge-kubeconfig" not in extra:
        args.append("--no-merge-kubeconfig")
    else:
        args.remove("--merge-kubeconfig")
    logf = log_path.open("wb")
    proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    vp = VdiskProcess(data_dir, proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vdisk exited with {proc.returncode}:\n{vp.log()}")
        if kubeconfig.exists() and ("is up" in vp.log() or "is serving" in vp.log()):
            vp.load()
            with vp.http() as c:
                if c.get("/readyz").status_code == 200:
                    return vp
        time.sleep(0.05)
    vp.stop()
    raise RuntimeError(f"vdisk did not start within {timeout}s:\n{vp.log()}")


@pytest.fixture(scope="session")
def vdisk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VdiskProcess]:
    """One `vdisk up` for the session; tests isolate themselves with their own namespace."""
    vp = start_vdisk(tmp_path_factory.mktemp("vdisk"))
    yield vp
    vp.stop()


@dataclass
class Kubectl:
    binary: str
    kubeconfig: Path
    cache_dir: Path
    namespace: str | None = None

    def run(self, *args: str, input: str | None = None, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 60, namespace: str | None = "__default__") -> subprocess.CompletedProcess[str]:
        ns = self.namespace if namespace == "__default__" else namespace
        cmd = [self.binary, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir)]
        if ns:
            cmd += ["-n", ns]
        cmd += list(args)
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **(env or {})})
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def __call__(self, *args: str, **kw: Any) -> str:
        return self.run(*args, **kw).stdout

    def json(self, *args: str, **kw: Any) -> Any:
        import json

        return json.loads(self.run(*args, "-o", "json", **kw).stdout)

    def apply(self, manifest: dict[str, Any] | str, *args: str) -> str:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self("apply", "-f", "-", *args, input=text)

    def create(self, manifest: dict[str, Any] | str, *args: str, check: bool = True
               ) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.run("create", "-f", "-", *args, input=text, check=check)


@pytest.fixture(params=kubectl_binaries(), ids=lambda b: Path(b).name)
def kubectl(request: pytest.FixtureRequest, vdisk: VdiskProcess, namespace: str) -> Kubectl:
    """The real kubectl (dispatcher and 1.30), with a fresh discovery cache, in the test's namespace."""
    cache = Path(tempfile.mkdtemp(prefix="kubectl-cache-"))
    request.addfinalizer(lambda: shutil.rmtree(cache, ignore_errors=True))
    return Kubectl(request.param, vdisk.kubeconfig, cache, namespace)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, vdisk: VdiskProcess) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    import re

    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{base}-{os.urandom(3).hex()}"
    with vdisk.http() as c:
        r = c.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        assert r.status_code == 201, r.text
    yield name
    with vdisk.http() as c:
        c.delete(f"/api/v1/namespaces/{name}")


def wait_for(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05, what: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the last error is part of the report
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}; last seen: {last!r}")


def contains(actual: Any, expected: Any) -> bool:
    """True if every field of `expected` is in `actual` with the same value (defaults may add more)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    return bool(actual == expected)


pytest_plugins = ["tests.fixtures_servers"]
