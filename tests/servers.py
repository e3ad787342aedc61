"""Real servers for import tests, started on 127.0.0.1 with ephemeral ports in temp dirs.

- a test CA and server certificates (cryptography);
- nginx (Debian nginx-light): plain HTTP, HTTPS with the test CA, basic auth (htpasswd), a rate-limited port;
- the CNCF distribution registry (Debian docker-registry): one with TLS + htpasswd (bcrypt), one insecure;
- `push_container_disk`: pushes an OCI image with a disk file under /disk/ through the registry's HTTP API
  (what `podman push` of a container disk does);
- `make_images`: test images generated with qemu-img.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- certificates -----------------------------------------------------------------------------------------

@dataclass
class TestCA:
    cert: Path
    key: Path
    server_cert: Path
    server_key: Path

    @property
    def pem(self) -> str:
        return self.cert.read_text()


def make_ca(directory: Path, name: str = "vdisk test CA") -> TestCA:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = TestCA(directory / "ca.crt", directory / "ca.key", directory / "tls.crt", directory / "tls.key")
    paths.cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    paths.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.server_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    return paths


# --- nginx ------------------------------------------------------------------------------------------------

@dataclass
class Nginx:
    root: Path
    http: int  # plain HTTP, no auth
    https: int  # TLS with the test CA
    auth: int  # HTTP with basic auth (user/password below)
    slow: int  # HTTP rate-limited to `slow_rate` bytes/s after the first 1 MiB
    ca: TestCA
    user: str = "importer"
    password: str = "s3cret-pass"
    slow_rate: int = 2 * MIB

    def url(self, name: str, kind: str = "http") -> str:
        port = {"http": self.http, "https": self.https, "auth": self.auth, "slow": self.slow}[kind]
        scheme = "https" if kind == "https" else "http"
        return f"{scheme}://127.0.0.1:{port}/{name}"


@contextmanager
def nginx(root: Path, workdir: Path, slow_rate: int = 2 * MIB) -> Iterator[Nginx]:
    workdir.mkdir(parents=True, exist_ok=True)
    ca = make_ca(workdir / "pki")
    ports = [free_port() for _ in range(4)]
    n = Nginx(root, ports[0], ports[1], ports[2], ports[3], ca=ca, slow_rate=slow_rate)
    sha = base64.b64encode(hashlib.sha1(n.password.encode()).digest()).decode()
    (workdir / "htpasswd").write_text(f"{n.user}:{{SHA}}{sha}\n")
    temp = {t: workdir / t for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for d in temp.values():
        d.mkdir(exist_ok=True)
    # as root, workers would drop to `nobody` and could not read pytest's private temp dirs
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = f"""
daemon off;
{user}
worker_processes 2;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp['body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    sendfile on;
    tcp_nopush on;
    types {{ }}
    default_type application/octet-stream;
    root {root};
    server {{ listen 127.0.0.1:{n.http}; }}
    server {{
        listen 127.0.0.1:{n.https} ssl;
        ssl_certificate {ca.server_cert};
        ssl_certificate_key {ca.server_key};
    }}
    server {{
        listen 127.0.0.1:{n.auth};
        auth_basic "vdisk test";
        auth_basic_user_file {workdir}/htpasswd;
    }}
    server {{
        listen 127.0.0.1:{n.slow};
        limit_rate_after 1m;
        limit_rate {slow_rate};
    }}
}}
"""
    (workdir / "nginx.conf").write_text(conf)
    log = workdir / "nginx.out"
    proc = subprocess.Popen(["nginx", "-p", str(workdir), "-c", str(workdir / "nginx.conf")],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        for p in ports:
            wait_port(p, proc, log)
        yield n
    finally:
        stop(proc)


# --- a server that stalls mid-stream ----------------------------------------------------------------------

@contextmanager
def stalling_server(payload: bytes, stall_after: int, ranges: bool = True) -> Iterator[str]:
    """HTTP server sending `stall_after` bytes of `payload`, then going silent (the connection stays open).
    Range requests are honoured, also stalling: a resume cannot finish either."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    done = threading.Event()
    conns: list[socket.socket] = []

    def handle(c: socket.socket) -> None:
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                chunk = c.recv(4096)
                if not chunk:
                    return
                req += chunk
            head = req.decode(errors="replace")
            start = 0
            for line in head.split("\r\n"):
                if line.lower().startswith("range: bytes="):
                    start = int(line.split("=", 1)[1].split("-", 1)[0])
            method = head.split(" ", 1)[0]
            status = "206 Partial Content" if start else "200 OK"
            hdr = (f"HTTP/1.1 {status}\r\nContent-Length: {len(payload) - start}\r\n"
                   f"{'Accept-Ranges: bytes' if ranges else 'X-No-Ranges: 1'}\r\n"
                   f"Content-Type: application/octet-stream\r\n\r\n")
            c.sendall(hdr.encode())
            if method == "HEAD":
                return
            c.sendall(payload[start:max(start, stall_after)])
            done.wait()
        except OSError:
            pass
        finally:
            c.close()

    def accept() -> None:
        while not done.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{port}/disk.img"
    finally:
        done.set()
        srv.close()
        for c in conns:
            try:
                c.close()
            except OSError:
                pass


# --- the distribution registry ----------------------------------------------------------------------------

@dataclass
class Registry:
    port: int
    tls: bool
    ca: TestCA | None
    user: str | None
    password: str | None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def client(self) -> httpx.Client:
        auth = (self.user, self.password or "") if self.user else None
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(self.ca.cert)) if self.ca else True
        return httpx.Client(base_url=self.base, auth=auth, verify=verify, timeout=120)


@contextmanager
def registry(workdir: Path, ca: TestCA | None = None, user: str | None = None,
             password: str | None = None) -> Iterator[Registry]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = ["version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
             f"    rootdirectory: {workdir / 'storage'}", "  delete:", "    enabled: true",
             "http:", f"  addr: 127.0.0.1:{port}", "  secret: vdisk-test-secret"]
    if ca is not None:
        lines += ["  tls:", f"    certificate: {ca.server_cert}", f"    key: {ca.server_key}"]
    if user is not None:
        hashed = bcrypt.hashpw((password or "").encode(), bcrypt.gensalt(rounds=5)).decode()
        (workdir / "htpasswd").write_text(f"{user}:{hashed}\n")
        lines += ["auth:", "  htpasswd:", "    realm: vdisk-test", f"    path: {workdir / 'htpasswd'}"]
    (workdir / "config.yml").write_text("\n".join(lines) + "\n")
    log = workdir / "registry.log"
    proc = subprocess.Popen(["docker-registry", "serve", str(workdir / "config.yml")], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    try:
        wait_port(port, proc, log)
        yield Registry(port, ca is not None, ca, user, password)
    finally:
        stop(proc)


def _blob(c: httpx.Client, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if c.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
        return digest
    r = c.post(f"/v2/{repo}/blobs/uploads/")
    r.raise_for_status()
    loc = r.headers["Location"]
    sep = "&" if "?" in loc else "?"
    r = c.put(f"{loc}{sep}digest={digest}", content=data, headers={"Content-Type": "application/octet-stream"})
    r.raise_for_status()
    return digest


def disk_layer(disk: Path | None, name: str = "disk.img", extra: dict[str, bytes] | None = None,
               compress: bool = True) -> bytes:
    """A layer tar with /disk/<name> (107:107, 0440), as a container disk is built (R39)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("disk")
        d.type, d.mode, d.uid, d.gid = tarfile.DIRTYPE, 0o555, 107, 107
        tar.addfile(d)
        for path, content in (extra or {}).items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        if disk is not None:
            info = tarfile.TarInfo(f"disk/{name}")
            info.size, info.mode, info.uid, info.gid = disk.stat().st_size, 0o440, 107, 107
            with disk.open("rb") as f:
                tar.addfile(info, f)
    data = raw.getvalue()
    return gzip.compress(data, compresslevel=1, mtime=0) if compress else data


def push_container_disk(reg: Registry, repo: str, tag: str, layers: list[bytes], compressed: bool = True) -> str:
    """Push an OCI image made of `layers` (tar or tar+gzip); returns the manifest digest."""
    media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compressed else "")
    with reg.client() as c:
        descs = []
        diff_ids = []
        for layer in layers:
            digest = _blob(c, repo, layer)
            descs.append({"mediaType": media, "digest": digest, "size": len(layer)})
            plain = gzip.decompress(layer) if compressed else layer
            diff_ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                                                               "diff_ids": diff_ids},
                             "config": {}}).encode()
        cdigest = _blob(c, repo, config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": cdigest, "size": len(config)},
                               "layers": descs}).encode()
        r = c.put(f"/v2/{repo}/manifests/{tag}", content=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        r.raise_for_status()
        return "sha256:" + hashlib.sha256(manifest).hexdigest()


# --- images -----------------------------------------------------------------------------------------------

def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def write_pattern(path: Path, size: int, extents: list[tuple[int, int]], seed: int = 1) -> None:
    """A sparse raw file of `size` with pseudo-random data at (offset, length) extents."""
    with path.open("wb") as f:
        f.truncate(size)
        for i, (off, length) in enumerate(extents):
            f.seek(off)
            block = hashlib.sha256(f"{seed}-{i}".encode()).digest() * (MIB // 32)
            left = length
            while left > 0:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n


@dataclass
class Images:
    dir: Path
    raw: Path  # 64 MiB virtual, ~20 MiB of data in extents, the rest holes
    size: int


def make_images(d: Path) -> Images:
    """raw, qcow2, vmdk, vdi, vhdx, vpc, compressed variants, a qcow2 with a backing file, a corrupt qcow2,
    a truncated gzip, an ISO-like raw and a tar archive."""
    d.mkdir(parents=True, exist_ok=True)
    size = 64 * MIB
    raw = d / "disk.raw"
    write_pattern(raw, size, [(0, 4 * MIB), (10 * MIB, 3 * MIB + 4096), (32 * MIB, 8 * MIB), (size - MIB, MIB)])
    for fmt, ext in (("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vdi", "vdi"), ("vhdx", "vhdx"), ("vpc", "vhd")):
        qemu_img("convert", "-f", "raw", "-O", fmt, str(raw), str(d / f"disk.{ext}"))
    for src in ("disk.raw", "disk.qcow2"):
        data = (d / src).read_bytes()
        (d / f"{src}.gz").write_bytes(gzip.compress(data, compresslevel=1))
        subprocess.run(["xz", "-0", "-T2", "-k", "-f", str(d / src)], check=True)
        subprocess.run(["zstd", "-q", "-1", "-f", str(d / src), "-o", str(d / f"{src}.zst")], check=True)
    gz = (d / "disk.raw.gz").read_bytes()
    (d / "truncated.raw.gz").write_bytes(gz[: len(gz) // 2])
    xz = (d / "disk.raw.xz").read_bytes()
    (d / "truncated.raw.xz").write_bytes(xz[: len(xz) // 2])
    zst = (d / "disk.raw.zst").read_bytes()
    (d / "truncated.raw.zst").write_bytes(zst[: len(zst) // 2])
    base = d / "base.qcow2"
    qemu_img("create", "-f", "qcow2", str(base), "64M")
    qemu_img("create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(d / "backed.qcow2"))
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={d / 'external.data'}", str(d / "datafile.qcow2"), "64M")
    corrupt = bytearray((d / "disk.qcow2").read_bytes())
    corrupt[40:48] = (0xFFFFFFFF).to_bytes(4, "big") * 2  # l1_size / l1_table_offset garbage
    (d / "corrupt.qcow2").write_bytes(bytes(corrupt))
    qemu_img("create", "-f", "qcow2", str(d / "big.qcow2"), "20G")
    (d / "tiny.bin").write_bytes(b"not an image")
    with tarfile.open(d / "archive.tar", "w") as tar:
        for name, content in (("hello.txt", b"hello from an archive\n"), ("sub/data.bin", os.urandom(3 * MIB))):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    shutil.copy(d / "archive.tar", d / "archive.tar.copy")
    return Images(d, raw, size)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


# --- a network that breaks ----------------------------------------------------------------------------------

@dataclass
class Relay:
    port: int
    cut_after: int  # client->server bytes after which the first `cuts` connections are dropped
    cuts: int
    forwarded: int = 0  # client->server bytes relayed, all connections

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@contextmanager
def cutting_relay(target_port: int, cut_after: int, cuts: int = 1, busy: int = 0) -> Iterator[Relay]:
    """A TCP relay to 127.0.0.1:`target_port` that drops its first `cuts` connections once `cut_after`
    bytes went upstream on them (TLS passes through untouched): a network failure mid-upload. With
    `busy`, the first `busy` connections get a plain-HTTP 503 with Retry-After instead (an upload proxy
    whose upload server is restarting)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    relay = Relay(srv.getsockname()[1], cut_after, cuts)
    lock = threading.Lock()
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket, upstream: bool, state: dict[str, Any]) -> None:
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                if upstream:
                    with lock:
                        relay.forwarded += len(data)
                    state["sent"] += len(data)
                    if state["cut"] and state["sent"] >= cut_after:
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def accept() -> None:
        nonlocal busy
        while not stop.is_set():
            try:
                client, _ = srv.accept()
            except OSError:
                return
            if busy > 0:
                busy -= 1
                with contextlib.suppress(OSError):
                    client.recv(65536)
                    client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 26\r\n"
                                   b"Connection: close\r\n\r\nupload server is not ready")
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", target_port))
            with lock:
                cut = relay.cuts > 0
                # only a connection that carries an upload body counts as a cut (small requests pass)
            state = {"sent": 0, "cut": cut}

            def up(c: socket.socket = client, u: socket.socket = upstream, st: dict[str, Any] = state) -> None:
                pump(c, u, True, st)
                if st["cut"] and st["sent"] >= cut_after:
                    with lock:
                        relay.cuts -= 1

            threading.Thread(target=up, daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, False, state), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield relay
    finally:
        stop.set()
        srv.close()
