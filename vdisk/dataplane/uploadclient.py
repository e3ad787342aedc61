"""Sending an image file to an upload proxy: resumable, sparse, with progress (the client half of upload.py).

Against vdisk's proxy the file goes as ranged PUTs: a raw image as its data extents only (SEEK_DATA/
SEEK_HOLE: holes never cross the wire), anything else as one sequential stream; after a broken
connection the client asks the server how far it got (GET) and continues there; `finish` (PATCH) ends
the upload once the data is durable. The upload is tagged with an id derived from the file, so a new
run for the same file resumes a session a killed run left behind. Against a server without the
resumable API (CDI's), it POSTs the whole file, retrying from the start, as virtctl does.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import DataplaneError
from .sniff import HEADER_SIZE, detect

CHUNK = 4 << 20
MERGE_GAP = 1 << 20  # holes smaller than this are sent (fewer requests beat a few zero bytes)
MAX_REQUEST = 4 << 30


class UploadError(DataplaneError):
    """The server refused the upload (its message), or retries ran out."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class Unauthorized(UploadError):
    pass


class Retryable(UploadError):
    """The server is not there for a moment (502/504, or 503 with Retry-After): try again."""


TOKEN_MAX_AGE = 240.0  # upload tokens live 5 minutes: a request never starts with an older one


@dataclass
class Stats:
    sent: int = 0  # bytes put on the wire (all attempts)
    attempts: int = 0
    resumed_from: int = 0
    sparse: bool = False


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """[(offset, length)] of the data in a file, small holes merged; the first extent starts at 0."""
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        if out and start - (out[-1][0] + out[-1][1]) < MERGE_GAP:
            out[-1] = (out[-1][0], end - out[-1][0])
        else:
            out.append((start, end - start))
        pos = end
    if not out or out[0][0] != 0:
        head = min(size, 1 << 16)  # the server sniffs the format from the first bytes
        if out and out[0][0] <= head:
            out[0] = (0, out[0][0] + out[0][1])
        else:
            out.insert(0, (0, head))
    split: list[tuple[int, int]] = []
    for off, length in out:
        while length > MAX_REQUEST:
            split.append((off, MAX_REQUEST))
            off, length = off + MAX_REQUEST, length - MAX_REQUEST
        split.append((off, length))
    return split


def upload_id(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]


class Uploader:
    def __init__(self, url: str, token: Callable[[bool], str], *, insecure: bool = False,
                 ca_file: str | None = None, timeout: float = 120.0, headers: dict[str, str] | None = None,
                 progress: Callable[[int, int], None] = lambda done, total: None):
        """`url`: the proxy base (https://host:port); `token(refresh)` returns an upload token; `headers` go
        with every request (e.g. the key of an upload server reached directly)."""
        self.headers = dict(headers or {})
        parts = urlsplit(url if "://" in url else f"https://{url}")
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        base = parts.path.rstrip("/")
        self.path = base if base.endswith("/upload") else (base + "/v1beta1/upload")
        self.token = token
        self.timeout = timeout
        self.progress = progress
        self.ctx: ssl.SSLContext | None = None
        if self.scheme == "https":
            self.ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
            if insecure:
                self.ctx.check_hostname = False
                self.ctx.verify_mode = ssl.CERT_NONE
        self._token = token(False)
        self._token_at = time.monotonic()
        self.stats = Stats()
        self._keep: http.client.HTTPConnection | None = None

    # --- HTTP --------------------------------------------------------------------------------------------

    def _conn(self, timeout: float | None = -1.0) -> http.client.HTTPConnection:
        t = self.timeout if timeout == -1.0 else timeout
        if self.ctx is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=t, context=self.ctx)
        return http.client.HTTPConnection(self.host, self.port, timeout=t)

    def _bearer(self) -> str:
        if time.monotonic() - self._token_at > TOKEN_MAX_AGE:
            self._refresh()
        return f"Bearer {self._token}"

    def _refresh(self) -> None:
        self._token = self.token(True)
        self._token_at = time.monotonic()

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                 timeout: float | None = -1.0) -> tuple[int, bytes]:
        conn = self._conn(timeout)
        try:
            conn.request(method, path, body=body, headers={"Authorization": self._bearer(),
                                                            **self.headers, **(headers or {})})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status in (502, 504) or (resp.status == 503 and resp.getheader("Retry-After")):
                raise Retryable(body.decode(errors="replace").strip(), resp.status)
            return resp.status, body
        finally:
            conn.close()

    def _status(self) -> dict[str, object] | None:
        """The session the server holds, or None when it has no resumable API (CDI's server)."""
        code, body = self._request("GET", self.path)
        if code in (404, 405):
            return None
        self._raise_for(code, body)
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return data if isinstance(data, dict) and "session" in data else None

    @staticmethod
    def _answer_after_send_error(conn: http.client.HTTPConnection, exc: OSError) -> tuple[int, bytes]:
        """The server may have answered (a refusal) before it stopped reading: prefer its words."""
        try:
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            raise exc from None

    def _send_range(self, f: int, start: int, length: int, total: int, uid: str) -> None:
        """One PUT of [start, start+length) of the file."""
        self._put({"Content-Type": "application/octet-stream", "Content-Length": str(length),
                   "Content-Range": f"bytes {start}-{start + length - 1}/{total}", "X-Vdisk-Upload-Id": uid},
                  lambda sock: self._send_body(sock, f, start, length, total))

    def _send_extents(self, f: int, extents: list[tuple[int, int]], total: int, uid: str) -> None:
        """All data extents in one PUT, each framed as (offset u64, length u64, bytes)."""
        def frames(sock: socket.socket) -> None:
            for start, length in extents:
                sock.sendall(struct.pack(">QQ", start, length))
                self._send_body(sock, f, start, length, total)

        self._put({"Content-Type": "application/x-vdisk-extents",
                   "Content-Length": str(sum(16 + n for _, n in extents)),
                   "X-Vdisk-Upload-Total": str(total), "X-Vdisk-Upload-Id": uid}, frames)

    def _put(self, headers: dict[str, str], send: Callable[[socket.socket], None]) -> None:
        """A PUT on a kept-alive connection (a sparse file is many requests: a TLS handshake each would
        cost more than its data); `send` writes the body to the socket."""
        if self._keep is None:
            self._keep = self._conn()
        conn = self._keep
        ok = False
        try:
            conn.putrequest("PUT", self.path, skip_accept_encoding=True)
            for name, value in {"Authorization": self._bearer(), **self.headers, **headers}.items():
                conn.putheader(name, value)
            conn.endheaders()
            sock = conn.sock
            assert sock is not None
            try:
                send(sock)
            except OSError as exc:
                code, body = self._answer_after_send_error(conn, exc)
                self._raise_for(code, body)
                raise
            resp = conn.getresponse()
            body = resp.read()
            ok = not resp.will_close
            self._raise_for(resp.status, body, resp.getheader("Retry-After"))
        finally:
            if not ok:
                conn.close()
                self._keep = None

    @staticmethod
    def _raise_for(code: int, body: bytes, retry_after: str | None = None) -> None:
        if code == 401:
            raise Unauthorized(body.decode(errors="replace").strip(), 401)
        if code in (502, 504) or (code == 503 and retry_after):
            raise Retryable(body.decode(errors="replace").strip(), code)
        if code >= 400 and code != 416:  # 416: the server is elsewhere; the caller asks it where
            raise UploadError(body.decode(errors="replace").strip(), code)

    def _send_body(self, sock: socket.socket, f: int, start: int, length: int, total: int) -> None:
        sent = 0
        if self.ctx is None:  # plain HTTP: the kernel copies file to socket (socket.sendfile minds the timeout)
            with os.fdopen(os.dup(f), "rb", buffering=0) as fobj:
                while sent < length:
                    n = min(length - sent, CHUNK * 16)
                    if sock.sendfile(fobj, start + sent, n) != n:
                        raise ConnectionResetError("the connection closed while sending")
                    sent += n
                    self.stats.sent += n
                    self.progress(start + sent, total)
            return
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while sent < length:
            n = os.preadv(f, [view[:min(CHUNK, length - sent)]], start + sent)
            if n == 0:
                raise UploadError("the file got shorter while it was being uploaded")
            sock.sendall(view[:n])
            sent += n
            self.stats.sent += n
            self.progress(start + sent, total)

    # --- the upload -----------------------------------------------------------------------------------------

    def upload(self, path: Path, retries: int = 5) -> Stats:
        size = path.stat().st_size
        fd = os.open(path, os.O_RDONLY)
        try:
            head = os.pread(fd, 65536, 0)
            raw = len(head) >= HEADER_SIZE and detect(head) == "raw"
            extents = data_extents(fd, size) if raw else [(0, size)]
            self.stats.sparse = raw
            uid = upload_id(path)
            attempt = 0
            refreshes = 0
            first = True
            finishing = False  # a finish was sent: its answer may be lost while the server converts
            while True:
                self.stats.attempts += 1
                try:
                    try:
                        status = self._status()
                    except UploadError as exc:
                        if finishing and _finished(exc):
                            return self.stats
                        raise
                    except (OSError, http.client.HTTPException):
                        if finishing:  # the upload server ended after our finish: the volume tells how
                            return self.stats
                        raise
                    refreshes = 0  # the token works
                    if status is None:
                        self._post(fd, size)
                        return self.stats
                    if finishing and (status.get("done") or status.get("finishing")):
                        self._await_finish()
                        return self.stats
                    offset = 0
                    if status.get("session") and status.get("clientId") == uid and not status.get("done"):
                        offset = int(str(status.get("offset") or 0))
                        if first and offset:
                            self.stats.resumed_from = offset
                    elif status.get("session") and not status.get("done"):
                        self._request("PATCH", self.path, json.dumps({"op": "abort"}).encode(),
                                      {"Content-Type": "application/json"})
                    first = False
                    self.progress(offset, size)
                    todo = [(max(s, offset), s + n - max(s, offset)) for s, n in extents if s + n > offset]
                    if raw and len(todo) > 1 and "extents" in (status.get("features") or []):  # type: ignore
                        self._send_extents(fd, todo, size, uid)  # one request for all: no per-range cost
                    else:
                        for begin, length in todo:
                            self._send_range(fd, begin, length, size, uid)
                    self._drop()
                    finishing = True
                    self._finish(size)
                    return self.stats
                except Unauthorized:
                    if refreshes >= 3:
                        raise UploadError("authentication failed: the upload token was refused", 401) from None
                    refreshes += 1
                    self._refresh()
                except (OSError, http.client.HTTPException, Retryable) as exc:
                    self._drop()
                    attempt += 1
                    if attempt > retries:
                        raise UploadError(f"error uploading image after {retries} retries: {exc}") from exc
                    time.sleep(min(0.5 * 2 ** (attempt - 1), 10.0))
        finally:
            os.close(fd)

    def _drop(self) -> None:
        if self._keep is not None:
            self._keep.close()
            self._keep = None

    def _finish(self, size: int) -> None:
        """Ask the server to finish: it converts/flushes before answering, which takes as long as it takes
        (no read timeout); a lost answer is recovered by asking the status."""
        code, body = self._request("PATCH", self.path, json.dumps({"op": "finish", "size": size}).encode(),
                                   {"Content-Type": "application/json"}, timeout=None)
        self._raise_for(code, body)

    def _await_finish(self) -> None:
        """A finish is under way on the server (its answer was lost): wait for it to end. An upload server
        that is gone has ended its work: the caller reads the outcome from the volume (the DV's phase)."""
        while True:
            try:
                status = self._status()
            except UploadError as exc:
                if _finished(exc):
                    return
                raise
            except (OSError, http.client.HTTPException):
                return
            if status is None or status.get("done"):
                return
            if not status.get("finishing"):
                raise UploadError("the upload server dropped the upload while finishing it: run the upload again")
            time.sleep(1.0)

    def _post(self, fd: int, size: int) -> None:
        """CDI's API: the whole file in one POST (async when the server offers it)."""
        code, _ = self._request("HEAD", self.path + "-async")
        path = self.path + "-async" if code == 200 else self.path
        conn = self._conn()
        try:
            conn.putrequest("POST", path, skip_accept_encoding=True)
            conn.putheader("Authorization", self._bearer())
            for name, value in self.headers.items():
                conn.putheader(name, value)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(size))
            conn.endheaders()
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            sent = 0
            assert conn.sock is not None
            try:
                while sent < size:
                    n = os.preadv(fd, [view[:min(CHUNK, size - sent)]], sent)
                    if n == 0:
                        raise UploadError("the file got shorter while it was being uploaded")
                    conn.sock.sendall(view[:n])
                    sent += n
                    self.stats.sent += n
                    self.progress(sent, size)
            except OSError as exc:
                code, answer = self._answer_after_send_error(conn, exc)
                raise UploadError(f"unexpected return value {code}, {answer.decode(errors='replace').strip()}",
                                  code) from None
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 401:
                raise Unauthorized(body.decode(errors="replace").strip(), 401)
            if resp.status in (502, 504) or (resp.status == 503 and resp.getheader("Retry-After")):
                raise Retryable(body.decode(errors="replace").strip(), resp.status)
            if resp.status != 200:
                raise UploadError(f"unexpected return value {resp.status}, {body.decode(errors='replace').strip()}",
                                  resp.status)
        finally:
            conn.close()


def _finished(exc: UploadError) -> bool:
    """The server's way of saying a finish already completed: the upload server answers 409, the proxy 503
    once the upload pod has ended."""
    return exc.status == 409 or (exc.status == 503 and "already finished" in str(exc))


__all__ = ["Retryable", "Stats", "UploadError", "Uploader", "data_extents", "upload_id"]
