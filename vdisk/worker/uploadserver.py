"""The upload server pod: receives an image over HTTP for one PVC (CDI's cdi-uploadserver, plus resume).

Environment:
  UPLOAD_KEY              a secret the upload proxy presents (header X-Vdisk-Upload-Key)
  POD_IP                  address to listen on (port chosen by the OS; published in the progress record)
  UPLOAD_IMAGE_SIZE       the claim's request;  FILESYSTEM_OVERHEAD, PREALLOCATION as for the importer
  UPLOAD_CONTENT_TYPE     kubevirt | archive
Volumes: the target at /data or /dev/cdi-block-volume; scratch at /scratch.

CDI's API (one upload at a time: a concurrent request gets 503, a finished upload 409):
  POST /v1beta1/upload, /upload-async           the whole image as the body (Content-Length or chunked)
  POST /v1beta1/upload-form, /upload-form-async multipart/form-data, field "file"
  HEAD /v1beta1/upload-async                    200: async is supported
  GET  /healthz                                 "OK"
vdisk's resumable API on the same paths:
  GET   /v1beta1/upload                         {"session", "kind", "offset", "total", "done"}
  PUT   /v1beta1/upload  Content-Range: bytes a-b/total   one range; raw images may skip holes
  PUT   /v1beta1/upload  Content-Type: application/x-vdisk-extents, X-Vdisk-Upload-Total: size
                         frames of (offset u64, length u64, bytes): all data extents in one request
  PATCH /v1beta1/upload  {"op": "finish", "size": total} | {"op": "abort"}
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..cdi import UPLOAD_KEY_HEADER as KEY_HEADER
from ..dataplane import importer
from ..dataplane.errors import DataplaneError, FormatError, TooSmall, UnsafeImage
from ..dataplane.importer import Volume
from ..dataplane.progress import ProgressFile
from ..dataplane.stream import read_upto
from ..dataplane.upload import RangeError, Session, open_session, upload_prefix
from .pod import progress_file, terminate, volume

log = logging.getLogger("vdisk.worker.uploadserver")

UPLOAD_PATHS = re.compile(r"^/v1(alpha|beta)1/upload(-async|-form|-form-async|-archive)?/?$")
RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class _BodyReader:
    """The request body as a Reader: Content-Length bounded, or chunked transfer coding."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool):
        self.rfile = rfile
        self.left = length
        self.chunked = chunked
        self.chunk_left = 0
        self.eof = False
        self.count = 0

    def readinto(self, buf: memoryview) -> int:
        if self.eof:
            return 0
        if self.chunked:
            if self.chunk_left == 0:
                line = self.rfile.readline(1024)
                if not line:
                    raise FormatError("the upload stream ended in the middle of a chunk")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    self.eof = True
                    return 0
                self.chunk_left = size
            n = self.rfile.readinto(buf[:min(len(buf), self.chunk_left)])
            if not n:
                raise FormatError("the upload stream ended in the middle of a chunk")
            self.chunk_left -= n
            if self.chunk_left == 0:
                self.rfile.readline(16)
            self.count += n
            return int(n)
        if self.left is not None:
            if self.left <= 0:
                self.eof = True
                return 0
            buf = buf[:self.left]
        n = self.rfile.readinto(buf) or 0
        if n == 0:
            self.eof = True
        if self.left is not None:
            self.left -= n
        self.count += n
        return int(n)


class _MultipartFile:
    """The `file` part of a multipart/form-data body, streamed (the delimiter is held back)."""

    def __init__(self, body: _BodyReader, boundary: bytes):
        self.body = body
        self.delim = b"\r\n--" + boundary
        self.buf = bytearray()
        self.done = False
        first = b"--" + boundary
        self._fill(len(first) + 2)
        if not self.buf.startswith(first):
            raise FormatError("multipart body does not start with its boundary")
        del self.buf[:len(first)]
        while True:
            headers = self._headers()
            if b'name="file"' in headers:
                return
            self._skip_part()

    def _fill(self, n: int) -> bool:
        chunk = bytearray(1 << 20)
        while len(self.buf) < n:
            k = self.body.readinto(memoryview(chunk))
            if k == 0:
                return False
            self.buf += chunk[:k]
        return True

    def _headers(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(len(self.buf) + 1):
                raise FormatError("multipart body has no file part")
        end = self.buf.index(b"\r\n\r\n")
        headers = bytes(self.buf[:end])
        del self.buf[:end + 4]
        return headers

    def _skip_part(self) -> None:
        while self.delim not in self.buf:
            if not self._fill(len(self.buf) + (1 << 20)):
                raise FormatError("multipart body has no file part")
        del self.buf[:self.buf.index(self.delim) + len(self.delim)]

    def readinto(self, buf: memoryview) -> int:
        if self.done:
            return 0
        self._fill(len(buf) + len(self.delim))
        at = self.buf.find(self.delim)
        if at >= 0:
            n = min(at, len(buf))
            if n == at and n == 0:
                self.done = True
                return 0
        else:
            if len(self.buf) <= len(self.delim):
                raise FormatError("multipart body ended before its closing boundary")
            n = min(len(buf), len(self.buf) - len(self.delim))
        buf[:n] = self.buf[:n]
        del self.buf[:n]
        return n


EXTENT_HEADER = struct.Struct(">QQ")
EXTENTS_TYPE = "application/x-vdisk-extents"


class _Frame:
    """The next `left` bytes of a body."""

    def __init__(self, body: Any, left: int):
        self.body = body
        self.left = left

    def readinto(self, buf: memoryview) -> int:
        if self.left <= 0:
            return 0
        n = int(self.body.readinto(buf[:min(len(buf), self.left)]))
        self.left -= n
        return n


class UploadServer:
    def __init__(self, vol: Volume, content_type: str, key: str, report: ProgressFile):
        self.vol = vol
        self.content_type = content_type
        self.key = key
        self.report = report
        self.session: Session | None = None
        self.busy = threading.Lock()
        self.finished = threading.Event()
        self.result: dict[str, Any] | None = None
        self.finishing = False  # a finish is converting/flushing: a client that lost its answer waits
        self.endpoint = ""

    def status(self) -> dict[str, Any]:
        base = {"features": ["ranges", "extents"], "finishing": self.finishing}
        if self.session is None:
            return {**base, "session": None, "kind": None, "offset": 0, "total": None, "done": False, "clientId": ""}
        return {**base, **self.session.status()}

    def publish(self, phase: str) -> None:
        self.report.record["endpoint"] = self.endpoint
        self.report.update(phase=phase, force=True)

    def write(self, start: int, body: Any, length: int | None, total: int | None, client_id: str = "") -> int:
        if self.session is None or (start == 0 and self.session.offset == 0):
            if start != 0:
                raise RangeError(f"an upload must start at byte 0, not {start}", 0)
            head, reader = upload_prefix(body)
            if self.session is not None:
                self.session.abort()
            self.session = open_session(self.vol, head, total, self.content_type, self.report)
            self.session.client_id = client_id
            return self.session.write(0, reader, length)
        return self.session.write(start, body, length)

    def write_extents(self, body: Any, total: int | None, client_id: str = "") -> int:
        """A body of frames (offset: u64, length: u64, then the bytes), each written at its offset: a
        sparse image's data extents in one request, holes never sent."""
        done = 0
        while True:
            head = read_upto(body, EXTENT_HEADER.size)
            if not head:
                return done
            if len(head) < EXTENT_HEADER.size:
                raise FormatError("the extent stream ended inside a frame header")
            offset, length = EXTENT_HEADER.unpack(head)
            frame = _Frame(body, length)
            self.write(offset, frame, length, total, client_id)
            if frame.left:
                raise FormatError(f"the extent stream ended {frame.left} bytes short of its frame at {offset}")
            done += length

    def finish(self, total: int | None) -> dict[str, Any]:
        if self.session is None:
            raise FormatError("nothing was uploaded")
        self.finishing = True
        try:
            result = self.session.finish(total)
        finally:
            self.finishing = False
        self.result = {"message": "Upload Complete", "preallocationApplied": result.preallocation_applied,
                       "vdisk": {"route": result.route, "format": result.format, "virtualSize": result.virtual_size,
                                 "preallocation": result.preallocation}}
        return self.status()

    def abort(self) -> None:
        if self.session is not None:
            self.session.abort()
        self.session = None


def _error_status(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, RangeError):
        return 416, exc.message
    if isinstance(exc, TooSmall):  # CDI's IsNoCapacityError answer
        return 400, f"Saving stream failed: effective image size is larger than the reported available storage: " \
                    f"{exc.message}"
    if isinstance(exc, (FormatError, UnsafeImage)):
        return 400, f"Saving stream failed: {exc.message}"
    if isinstance(exc, DataplaneError):
        return 500, f"Saving stream failed: {exc.message}"
    return 500, f"Saving stream failed: {exc}"


def make_handler(server: UploadServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "vdisk-uploadserver"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            log.info("%s %s", self.address_string(), format % args)

        def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
            data = (json.dumps(body) if content_type == "application/json" else str(body)).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if code >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            if code >= 400 and self.command in ("POST", "PUT", "PATCH"):
                self._linger()

        def _linger(self) -> None:
            """Read what the sender still sends (up to 30 s) before closing, so it reads our answer
            instead of a connection reset (nginx's lingering close)."""
            body = getattr(self, "body_reader", None)
            if body is None or body.eof or body.left == 0:
                return
            deadline = time.monotonic() + 30
            try:
                self.connection.settimeout(2)
                buf = memoryview(bytearray(1 << 20))
                while time.monotonic() < deadline and body.readinto(buf):
                    pass
            except (OSError, FormatError):
                pass

        def _authorized(self) -> bool:
            if server.key and self.headers.get(KEY_HEADER) != server.key:
                self._send(403, "forbidden: this upload server only takes requests from the upload proxy",
                           "text/plain")
                return False
            return True

        def _path_ok(self) -> bool:
            if not UPLOAD_PATHS.match(self.path.split("?", 1)[0]):
                self._send(404, "not found", "text/plain")
                return False
            return True

        def _body(self) -> tuple[_BodyReader, int | None]:
            length_header = self.headers.get("Content-Length")
            chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            length = int(length_header) if length_header and not chunked else None
            self.body_reader = _BodyReader(self.rfile, length, chunked)
            return self.body_reader, length

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                self._send(200, "OK", "text/plain")
                return
            if not self._authorized() or not self._path_ok():
                return
            self._send(200, server.status())

        def do_HEAD(self) -> None:  # noqa: N802
            if not self._authorized() or not self._path_ok():
                return
            self._send(200, server.status())

        def _exclusive(self) -> bool:
            if server.result is not None:
                self._body()  # so that the refusal lingers over the body the sender is still sending
                self._send(409, "upload already completed", "text/plain")
                return False
            if not server.busy.acquire(blocking=False):
                self._body()
                self._send(503, "an upload to this volume is in progress", "text/plain")
                return False
            return True

        def _answer(self, work: Any) -> None:
            """Run `work()` -> (code, body[, content type]) holding the upload lock, then answer: the lock
            is released before the answer goes out, so the client's next request never finds it held."""
            if not self._authorized() or not self._path_ok() or not self._exclusive():
                return
            done = False
            try:
                try:
                    out = work()
                    done = bool(out[0] == 200 and server.result is not None)
                except Exception as exc:
                    code, message = _error_status(exc)
                    log.warning("%s %s failed: %s", self.command, self.path, message)
                    out = (code, {**server.status(), "message": message}, "application/json") if code == 416 \
                        else (code, message, "text/plain")
            finally:
                server.busy.release()
            self._send(*out)
            if done:
                server.finished.set()  # the pod ends once the answer is out

        def do_POST(self) -> None:  # noqa: N802
            def work() -> tuple[Any, ...]:
                body, length = self._body()
                reader: Any = body
                if "-form" in self.path:
                    m = re.search(r'boundary="?([^";]+)"?', self.headers.get("Content-Type") or "")
                    if not m:
                        raise FormatError("multipart/form-data upload without a boundary")
                    reader = _MultipartFile(body, m.group(1).encode())
                    length = None
                server.abort()  # CDI semantics: a POST starts over
                server.publish("Uploading")
                server.write(0, reader, length, length)
                if length is not None and body.count < length:
                    raise FormatError(f"the upload ended after {body.count} of {length} bytes")
                return 200, server.finish(None)

            self._answer(work)

        def do_PUT(self) -> None:  # noqa: N802
            def work() -> tuple[Any, ...]:
                body, length = self._body()
                rng = self.headers.get("Content-Range")
                start, total = 0, length
                if rng:
                    m = RANGE.match(rng.strip())
                    if not m:
                        raise RangeError(f"invalid Content-Range {rng!r}: expected 'bytes a-b/total'",
                                         server.status()["offset"])
                    start = int(m.group(1))
                    if length is None:
                        length = int(m.group(2)) - start + 1
                    total = None if m.group(3) == "*" else int(m.group(3))
                server.publish("Uploading")
                if (self.headers.get("Content-Type") or "").startswith(EXTENTS_TYPE):
                    size = self.headers.get("X-Vdisk-Upload-Total")
                    server.write_extents(body, int(size) if size else None, self.headers.get("X-Vdisk-Upload-Id", ""))
                else:
                    server.write(start, body, length, total, self.headers.get("X-Vdisk-Upload-Id", ""))
                return 200, server.status()

            self._answer(work)

        def do_PATCH(self) -> None:  # noqa: N802
            def work() -> tuple[Any, ...]:
                body, _ = self._body()
                raw = bytearray(65536)
                n = body.readinto(memoryview(raw))
                op = json.loads(bytes(raw[:n]) or b"{}")
                if op.get("op") == "finish":
                    return 200, server.finish(op.get("size"))
                if op.get("op") == "abort":
                    server.abort()
                    return 200, server.status()
                return 400, f"unknown operation {op.get('op')!r}: expected finish or abort", "text/plain"

            self._answer(work)

    return Handler


def main() -> int:
    report = progress_file()
    # UPLOAD_TARGET / UPLOAD_SCRATCH: where the pod's volumes are when it runs outside a pod (tests)
    vol = volume("UPLOAD_IMAGE_SIZE", Path(os.environ["UPLOAD_TARGET"]) if os.environ.get("UPLOAD_TARGET") else None,
                 Path(os.environ["UPLOAD_SCRATCH"]) if os.environ.get("UPLOAD_SCRATCH") else None)
    if vol.block and vol.preallocation:
        # preallocating a device takes as long as writing it: do it before the pod is ready (virtctl
        # waits for readiness) rather than inside the first request, where the client would time out
        report.update(phase="Preallocating", force=True)
        importer._write_zeros(vol.path)
        vol.zeroed = True
    up = UploadServer(vol, os.environ.get("UPLOAD_CONTENT_TYPE", "kubevirt") or "kubevirt",
                      os.environ.get("UPLOAD_KEY", ""), report)
    host = os.environ.get("POD_IP") or "127.0.0.1"
    httpd = ThreadingHTTPServer((host, int(os.environ.get("UPLOAD_PORT", "0") or 0)), make_handler(up))
    httpd.daemon_threads = True
    up.endpoint = f"http://{host}:{httpd.server_address[1]}"
    up.publish("UploadReady")
    log.info("upload server listening endpoint=%s target=%s", up.endpoint, up.vol.path)
    thread = threading.Thread(target=httpd.serve_forever, name="vdisk-uploadserver", daemon=True)
    thread.start()
    up.finished.wait()
    httpd.shutdown()
    httpd.server_close()
    report.close()
    terminate(up.result or {"message": "Upload Complete"})
    return 0


__all__ = ["HTTPStatus", "UploadServer", "main"]
