"""Container disks from an OCI/Docker registry: the disk image under /disk/ of an image (R39, R40).

Upstream: CDI pkg/importer/registry-datasource.go and transport.go (containers/image: manifest,
platform choice, layers, the first regular non-whiteout file under disk/, "Failed to find VM disk image
file in the container image") and the registry HTTP API v2 (distribution's spec: token auth with
WWW-Authenticate Bearer, Basic auth, manifest media types). A raw disk streams from the layer straight
into the volume; other formats go through scratch and qemu-img, as in CDI.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import ssl
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from .decompress import close_reader, decoding_reader
from .errors import AuthError, DataplaneError, FormatError, SourceError, UnsupportedSource
from .http import HttpSpec, HttpStream, fetch_small
from .sniff import CONVERTIBLE, detect
from .stream import CountingReader, PrefixedReader, ReaderFile

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MANIFEST_TYPES = ",".join([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"])
NOT_FOUND = "Failed to find VM disk image file in the container image"


@dataclass
class RegistrySpec:
    url: str  # docker://host[:port]/repo[:tag|@digest]
    username: str | None = None
    password: str | None = None
    ca_files: list[Path] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    architecture: str = "amd64"


@dataclass(frozen=True)
class ImageRef:
    host: str
    repository: str
    reference: str


DOCKER_HUB = "registry-1.docker.io"


def parse_url(url: str) -> ImageRef:
    if not url.startswith("docker://"):
        raise UnsupportedSource(f"Illegal registry source URL scheme {url}: vdisk imports docker:// images")
    rest = url[len("docker://"):]
    first, _, remainder = rest.partition("/")
    # containers/image's normalisation: the first part names a registry only if it looks like a host
    # (a dot, a port, or localhost); otherwise the image is on Docker Hub, single names under library/
    if remainder and ("." in first or ":" in first or first == "localhost"):
        host, path = first, remainder
    else:
        host, path = DOCKER_HUB, rest if remainder else f"library/{rest}"
    if not path or path.startswith(("/", ":", "@")) or not first:
        raise SourceError(f"invalid registry image reference {url}: no repository")
    if "@" in path:
        repo, _, ref = path.partition("@")
    elif ":" in path.rsplit("/", 1)[-1]:
        repo, _, ref = path.rpartition(":")
    else:
        repo, ref = path, "latest"
    return ImageRef(host, repo, ref)


class RegistryClient:
    def __init__(self, spec: RegistrySpec):
        self.spec = spec
        self.ref = parse_url(spec.url)
        names = {self.ref.host, self.ref.host.split(":")[0]}
        if self.ref.host == DOCKER_HUB:
            names |= {"docker.io", "index.docker.io"}
        self.insecure = bool(names & set(spec.insecure_registries))
        self.scheme = "https"
        self._auth: str | None = None

    def _http(self, url: str, accept: str | None = None) -> HttpSpec:
        headers = []
        if accept:
            headers.append(("Accept", accept))
        if self._auth:
            headers.append(("Authorization", self._auth))
        return HttpSpec(url=url, headers=headers, ca_files=self.spec.ca_files, insecure=self.insecure)

    def _url(self, path: str) -> str:
        return f"{self.scheme}://{self.ref.host}/v2/{self.ref.repository}/{path}"

    def _authenticate(self, challenge: str) -> None:
        if challenge.lower().startswith("basic"):
            if self.spec.username is None:
                raise AuthError("registry requires credentials: unauthorized: authentication required")
            token = base64.b64encode(f"{self.spec.username}:{self.spec.password or ''}".encode()).decode()
            self._auth = f"Basic {token}"
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise AuthError(f"registry answered an unknown auth challenge: {challenge}")
        if "scope" not in params:
            params["scope"] = f"repository:{self.ref.repository}:pull"
        spec = HttpSpec(url=f"{realm}?{urlencode(params)}", username=self.spec.username, password=self.spec.password,
                        ca_files=self.spec.ca_files, insecure=self.insecure)
        body = json.loads(fetch_small(spec))
        self._auth = f"Bearer {body.get('token') or body.get('access_token')}"

    def _get(self, path: str, accept: str | None = None) -> HttpStream:
        for attempt in range(3):
            stream = HttpStream(self._http(self._url(path), accept))
            try:
                stream.open()
                return stream
            except AuthError as exc:
                if attempt or "401" not in str(exc):
                    raise
                challenge = self._challenge(path)
                self._authenticate(challenge)
            except SourceError as exc:
                tls_failed = isinstance(exc.__cause__, ssl.SSLError) or "SSL" in str(exc)
                if self.insecure and self.scheme == "https" and tls_failed:
                    self.scheme = "http"  # an insecure registry may speak plain HTTP
                    continue
                raise
        raise AuthError("registry authentication failed: unauthorized")

    def _challenge(self, path: str) -> str:
        import http.client
        import ssl
        from urllib.parse import urlsplit

        parts = urlsplit(self._url(path))
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            ctx = ssl.create_default_context()
            for f in self.spec.ca_files:
                ctx.load_verify_locations(cafile=str(f))
            if self.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443, context=ctx, timeout=30)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=30)
        try:
            conn.request("GET", f"/v2/{self.ref.repository}/{path}")
            resp = conn.getresponse()
            resp.read()
            return resp.getheader("WWW-Authenticate") or ""
        finally:
            conn.close()

    def manifest(self) -> Obj:
        ref = self.ref.reference
        for _ in range(2):
            stream = self._get(f"manifests/{quote(ref)}", MANIFEST_TYPES)
            try:
                assert stream._resp is not None
                doc: Obj = json.loads(stream._resp.read(8 << 20))
            finally:
                stream.close()
            media = doc.get("mediaType", "")
            if "index" in media or "manifest.list" in media or "manifests" in doc:
                choice = next((m for m in doc.get("manifests") or []
                               if (m.get("platform") or {}).get("architecture") == self.spec.architecture and
                               (m.get("platform") or {}).get("os", "linux") == "linux"), None)
                if choice is None:
                    raise SourceError(f"no image for architecture {self.spec.architecture} in {self.spec.url}")
                ref = choice["digest"]
                continue
            return doc
        raise SourceError(f"nested manifest lists in {self.spec.url}")

    def blob(self, digest: str) -> HttpStream:
        return self._get(f"blobs/{digest}")


def _layer_compression(layer: Obj, first: bytes) -> str | None:
    media = layer.get("mediaType", "")
    if media.endswith("gzip"):
        return "gz"
    if media.endswith("zstd"):
        return "zst"
    kind = detect(first)
    return kind if kind in ("gz", "zst", "xz", "bz2") else None


class _MemberReader:
    """The Reader protocol over a tar member's file object."""

    def __init__(self, f: Any):
        self.f = f

    def readinto(self, buf: memoryview) -> int:
        data = self.f.read(len(buf))
        buf[:len(data)] = data
        return len(data)


def find_disk(spec: RegistrySpec, consume: Callable[[str, Any, int], Any],
              progress: Callable[[int], None] = lambda n: None) -> Any:
    """Pull the image and call `consume(format, reader, size)` with the first file under disk/."""
    client = RegistryClient(spec)
    manifest = client.manifest()
    layers = manifest.get("layers") or []
    for layer in layers:
        stream = client.blob(layer["digest"])
        data: Any = None
        try:
            head = bytearray(4096)
            n = stream.readinto(memoryview(head))
            compression = _layer_compression(layer, bytes(head[:n]))
            source = CountingReader(PrefixedReader(bytes(head[:n]), stream), None, progress)
            data = decoding_reader(compression, source) if compression else source
            try:
                with tarfile.open(fileobj=ReaderFile(data), mode="r|") as tar:  # type: ignore[call-overload]
                    for member in tar:
                        name = member.name.lstrip("./")
                        if not name.startswith("disk/") or not member.isreg() or \
                                Path(name).name.startswith(".wh."):
                            continue
                        f = tar.extractfile(member)
                        if f is None:
                            continue
                        head = f.read(512)
                        fmt = detect(head)
                        reader = PrefixedReader(head, _MemberReader(f))
                        log.info("registry disk found layer=%s file=%s format=%s size=%d", layer["digest"][:19],
                                 name, fmt, member.size)
                        return consume(fmt, reader, member.size)
            except (tarfile.TarError, EOFError, FormatError) as exc:
                log.warning("skipping unreadable layer digest=%s error=%s", layer["digest"], exc)
                continue
        finally:
            if data is not None:
                close_reader(data)
            stream.close()
    raise DataplaneError(NOT_FOUND)


__all__ = ["CONVERTIBLE", "FormatError", "RegistrySpec", "find_disk", "parse_url"]
