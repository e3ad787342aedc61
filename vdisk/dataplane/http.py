"""Reading an HTTP(S) source: redirects, basic auth, extra headers, custom CAs, ranges, resume.

Upstream: CDI pkg/importer/http-datasource.go (HEAD for the length, basic auth and headers re-applied on
redirects, the error texts such as "expected status code 200, got 404. Status: 404 Not Found").
Built on http.client rather than a higher-level library because the hot loop is `readinto` into a
reused buffer: no per-chunk allocation at gigabytes per second.

A stream that breaks mid-way resumes with a Range request when the server supports ranges, so a flaky
network costs a reconnect, not a restart from byte 0.
"""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from .errors import AuthError, SourceError

log = logging.getLogger(__name__)

USER_AGENT = "vdisk-importer"
MAX_REDIRECTS = 10
RESUME_ATTEMPTS = 5


@dataclass
class HttpSpec:
    url: str
    username: str | None = None
    password: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    ca_files: list[Path] = field(default_factory=list)
    insecure: bool = False
    connect_timeout: float = 30.0
    read_timeout: float = 60.0  # a server silent this long mid-stream is given up on (then resumed/retried)


def parse_header_lines(lines: list[str]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            out.append((name.strip(), value.strip()))
    return out


class HttpStream:
    """An open GET response with `readinto` that resumes after connection errors when it can."""

    def __init__(self, spec: HttpSpec):
        self.spec = spec
        self._ctx = self._ssl_context()
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self.url = spec.url
        self.length: int | None = None
        self.accepts_ranges = False
        self.offset = 0

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        for f in self.spec.ca_files:
            try:
                ctx.load_verify_locations(cafile=str(f))
            except (ssl.SSLError, OSError) as exc:
                log.warning("ignoring unusable CA file path=%s error=%s", f, exc)
        if self.spec.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        for name, value in self.spec.headers:
            h[name] = value
        if self.spec.username is not None:
            token = base64.b64encode(f"{self.spec.username}:{self.spec.password or ''}".encode()).decode()
            h["Authorization"] = f"Basic {token}"
        h.update(extra or {})
        return h

    def _request(self, method: str, url: str, headers: dict[str, str]) -> tuple[http.client.HTTPConnection,
                                                                                http.client.HTTPResponse, str]:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise SourceError(f"unsupported URL scheme {parts.scheme!r} in {url}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            conn: http.client.HTTPConnection
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(parts.hostname or "", port, timeout=self.spec.connect_timeout,
                                                   context=self._ctx)
            else:
                conn = http.client.HTTPConnection(parts.hostname or "", port, timeout=self.spec.connect_timeout)
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            try:
                conn.request(method, path, headers=headers)
                resp = conn.getresponse()
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                raise SourceError(f"Unable to connect to http data source: {exc.verify_message or exc}: "
                                  f"certificate signed by unknown authority") from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise SourceError(f"Unable to connect to http data source: {method.title()} \"{url}\": "
                                  f"{_net_error(exc, parts.hostname or '', port)}") from exc
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location") or "")
                resp.read()
                conn.close()
                continue
            if conn.sock is not None:
                conn.sock.settimeout(self.spec.read_timeout)
            return conn, resp, url
        raise SourceError(f"Unable to connect to http data source: too many redirects from {self.spec.url}")

    @staticmethod
    def _status_error(resp: http.client.HTTPResponse) -> SourceError:
        msg = (f"Unable to connect to http data source: expected status code 200, got {resp.status}. "
               f"Status: {resp.status} {resp.reason}")
        return AuthError(msg) if resp.status in (401, 403) else SourceError(msg)

    def probe(self) -> None:
        """HEAD for length and range support (a server refusing HEAD is fine: GET tells too)."""
        try:
            conn, resp, url = self._request("HEAD", self.spec.url, self._headers())
        except SourceError:
            return
        try:
            if resp.status == 200:
                cl = resp.getheader("Content-Length")
                self.length = int(cl) if cl and cl.isdigit() else None
                self.accepts_ranges = (resp.getheader("Accept-Ranges") or "").lower() == "bytes"
                self.url = url
        finally:
            conn.close()

    def open(self, offset: int = 0) -> None:
        headers = self._headers({"Range": f"bytes={offset}-"} if offset else None)
        conn, resp, url = self._request("GET", self.url, headers)
        if offset and resp.status == 206:
            pass
        elif resp.status != 200:
            err = self._status_error(resp)
            conn.close()
            raise err
        elif offset:
            conn.close()
            raise SourceError("the server does not support range requests: cannot resume")
        if not offset:
            cl = resp.getheader("Content-Length")
            if cl and cl.isdigit():
                self.length = int(cl)
            if (resp.getheader("Accept-Ranges") or "").lower() == "bytes":
                self.accepts_ranges = True
            ctype = resp.getheader("Content-Type") or ""
            if ctype.startswith("text/"):
                log.warning("source answers with Content-Type %s; reading it as an image anyway", ctype)
        self._conn, self._resp, self.url = conn, resp, url
        self.offset = offset

    def readinto(self, buf: memoryview) -> int:
        """Fill as much of `buf` as the next read gives; 0 at the end. Resumes broken streams."""
        attempts = 0
        while True:
            assert self._resp is not None
            try:
                n = self._resp.readinto(buf)
                if n == 0 and self.length is not None and self.offset < self.length:
                    raise http.client.IncompleteRead(b"", self.length - self.offset)
                self.offset += n
                return n
            except (OSError, http.client.HTTPException) as exc:
                attempts += 1
                if not self.accepts_ranges or attempts > RESUME_ATTEMPTS:
                    raise SourceError(f"reading the http data source failed at byte {self.offset}: "
                                      f"{exc or type(exc).__name__}") from exc
                log.warning("source stream broke, resuming offset=%d attempt=%d error=%s", self.offset, attempts,
                            exc or type(exc).__name__)
                self.close()
                time.sleep(min(2.0 ** attempts / 4, 5.0))
                self.open(self.offset)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
        self._conn = self._resp = None


def fetch_small(spec: HttpSpec, limit: int = 64 * 1024 * 1024) -> bytes:
    """A whole (small) response body, e.g. a registry manifest."""
    s = HttpStream(spec)
    s.open()
    try:
        assert s._resp is not None
        data = s._resp.read(limit + 1)
        if len(data) > limit:
            raise SourceError(f"response from {spec.url} is larger than {limit} bytes")
        return data
    finally:
        s.close()




def _net_error(exc: BaseException, host: str, port: int) -> str:
    """A network failure in the words Go's net package uses (what CDI's messages show), not errno numbers."""
    if isinstance(exc, ssl.SSLError):
        return str(exc)  # the TLS library's own words (an insecure registry's fallback to HTTP reads them)
    if isinstance(exc, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    if isinstance(exc, ConnectionRefusedError):
        return f"dial tcp {host}:{port}: connect: connection refused"
    if isinstance(exc, TimeoutError):
        return f"dial tcp {host}:{port}: i/o timeout"
    if isinstance(exc, OSError) and exc.strerror:
        return f"dial tcp {host}:{port}: {exc.strerror.lower()}"
    return str(exc) or type(exc).__name__


__all__ = ["HttpSpec", "HttpStream", "fetch_small", "parse_header_lines", "socket"]
