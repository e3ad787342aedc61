"""Upload sessions: the bytes of an image file arrive over one or more requests and land in the volume.

Upstream: CDI pkg/uploadserver (one upload at a time, raw written straight to the target, everything
else through scratch and qemu-img, "Saving stream failed: effective image size is larger than the
reported available storage"). Beyond CDI, a session survives its requests, so an interrupted upload
continues where it stopped instead of from byte 0:

- DirectSession (an uncompressed raw/ISO image): each request writes its byte range at its offset,
  zero blocks skipped on the fresh target; ranges may leave gaps, which are holes (a sparse client sends
  only data extents). `offset` is the end of what is durable.
- PipeSession (compressed, qcow2 and the other formats, archives): the bytes must arrive in order; they
  go through a pipe into the importer's stream functions running in a thread (decompression straight to
  the target, or scratch and qemu-img for qcow2, or tar extraction). A dropped request leaves the pipe
  open, so the next request resumes at `offset`.

The format is sniffed from the first bytes, which must arrive first.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from . import importer
from .decompress import _grow_pipe, peek
from .errors import DataplaneError, FormatError, TooSmall
from .importer import ImportResult, Reporter, Volume
from .progress import ProgressFile
from .sniff import COMPRESSIONS, CONVERTIBLE, HEADER_SIZE, detect, qcow2_virtual_size
from .stream import PrefixedReader, Reader, read_upto, stream_to_target

log = logging.getLogger(__name__)

SNIFF = 64 * 1024


class RangeError(DataplaneError):
    """A request that does not continue the session (HTTP 416 with the current offset)."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


class SessionFailed(DataplaneError):
    pass


class _Limited:
    """At most `left` bytes of a reader; counts what went through."""

    def __init__(self, inner: Reader, left: int | None):
        self.inner = inner
        self.left = left
        self.count = 0

    def readinto(self, buf: memoryview) -> int:
        if self.left is not None:
            if self.left <= 0:
                return 0
            buf = buf[:self.left]
        n = self.inner.readinto(buf)
        if n and self.left is not None:
            self.left -= n
        self.count += n
        return n


class Session:
    kind = ""

    def __init__(self, vol: Volume, total: int | None, report: Reporter):
        self.id = uuid.uuid4().hex
        self.vol = vol
        self.total = total
        self.report = report
        self.offset = 0
        self.done: ImportResult | None = None
        self.client_id = ""  # the uploading client's tag for its file, so a new run can resume

    def status(self) -> dict[str, Any]:
        return {"session": self.id, "kind": self.kind, "offset": self.offset, "total": self.total,
                "done": self.done is not None, "clientId": self.client_id}

    def _progress(self, position: int | None = None) -> None:
        pos = self.offset if position is None else position
        if self.total:
            self.report.update(min(100.0, pos * 100.0 / self.total), done=pos, total=self.total)
        else:
            self.report.update(None, done=pos)

    def write(self, start: int, reader: Reader, length: int | None) -> int:
        raise NotImplementedError

    def finish(self, total: int | None) -> ImportResult:
        raise NotImplementedError

    def abort(self) -> None:
        pass


class DirectSession(Session):
    """An uncompressed raw image written at its offsets into the target."""

    kind = "raw"

    def __init__(self, vol: Volume, total: int | None, report: Reporter):
        super().__init__(vol, total, report)
        if total is not None and total > vol.usable():
            raise TooSmall(total, vol.usable())
        self.target = importer._fresh_target(vol)
        self.written = Extents()  # what requests wrote: the gaps must read as zeros at the end
        report.update(0.0, phase="TransferDataFile", total=total, force=True)

    def write(self, start: int, reader: Reader, length: int | None) -> int:
        if length is not None and self.target.limit is not None and start + length > self.target.limit:
            raise TooSmall(start + length, self.target.limit)
        before = self.target.size
        self.target.size = start  # from here on, size is the end of what this request wrote, contiguously
        limited = _Limited(reader, length)
        try:
            stream_to_target(limited, self.target, start=start,
                             progress=lambda n: self._progress(start + limited.count))
        finally:
            # the offset is what this server holds; it is made durable at finish (a server that dies
            # loses its session anyway, and the client then starts over)
            end = self.target.size
            self.written.add(start, end)
            self.target.size = max(before, end)
            self.offset = max(self.offset, end)
            self._progress()
        return limited.count

    def finish(self, total: int | None) -> ImportResult:
        size = total if total is not None else self.total if self.total is not None else self.offset
        if size < self.offset:
            raise FormatError(f"upload declared {size} bytes but {self.offset} were written")
        if size > self.vol.usable():
            raise TooSmall(size, self.vol.usable())
        if not self.target.fresh:
            # a device that may hold old data (no cheap zero-out): what no request wrote (the holes a
            # sparse client never sends) must still read as zeros
            for gap_start, gap_end in self.written.gaps(size):
                self.target.zero(gap_start, gap_end - gap_start)
        self.target.size = size
        prealloc = importer._finish_disk(self.vol, self.target, size)
        self.done = ImportResult("upload", size, size, prealloc, "raw")
        self.report.update(100.0, phase="Complete", force=True)
        return self.done

    def abort(self) -> None:
        self.target.close()


class Extents:
    """Disjoint, sorted [start, end) ranges: what a session wrote."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        r = self.ranges
        if not r or start > r[-1][1]:  # the usual case: ranges arrive in order
            r.append((start, end))
            return
        if start >= r[-1][0]:
            r[-1] = (r[-1][0], max(r[-1][1], end))
            return
        i = bisect.bisect_left(r, (start, start))
        if i and r[i - 1][1] >= start:
            i -= 1
        j = i
        while j < len(r) and r[j][0] <= end:
            start, end = min(start, r[j][0]), max(end, r[j][1])
            j += 1
        r[i:j] = [(start, end)]

    def gaps(self, size: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        pos = 0
        for a, b in self.ranges:
            if a >= size:
                break
            if a > pos:
                out.append((pos, a))
            pos = max(pos, b)
        if pos < size:
            out.append((pos, size))
        return out


class _PipeReader:
    """The reading end of a session's pipe. After an abort, its end is an error, not the end of the image:
    the worker thread must not go on to convert a truncated upload."""

    def __init__(self, fd: int, aborted: threading.Event):
        self.fd = fd
        self.aborted = aborted

    def readinto(self, buf: memoryview) -> int:
        n = os.readv(self.fd, [buf])
        if n == 0 and self.aborted.is_set():
            raise SessionFailed("the upload was aborted")
        return n


class PipeSession(Session):
    """Everything that must be read in order: through a pipe into an importer function in a thread."""

    def __init__(self, vol: Volume, total: int | None, report: Reporter, kind: str,
                 run: Callable[[Reader], ImportResult]):
        super().__init__(vol, total, report)
        self.kind = kind
        rfd, wfd = os.pipe()
        _grow_pipe(wfd)
        self._rfd, self._wfd = rfd, wfd
        self._aborted = threading.Event()
        self._error: BaseException | None = None
        self._result: ImportResult | None = None
        self._thread = threading.Thread(target=self._run, args=(run,), name="vdisk-upload-pipe", daemon=True)
        self._thread.start()

    def _run(self, run: Callable[[Reader], ImportResult]) -> None:
        try:
            self._result = run(_PipeReader(self._rfd, self._aborted))
        except BaseException as exc:  # reported to the next request
            self._error = exc
        finally:
            os.close(self._rfd)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, start: int, reader: Reader, length: int | None) -> int:
        self._check()
        if start != self.offset:
            raise RangeError(f"this upload must continue at byte {self.offset}, not {start}", self.offset)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        limited = _Limited(reader, length)
        while True:
            n = limited.readinto(view)
            if n == 0:
                break
            pos = 0
            while pos < n:
                try:
                    pos += os.write(self._wfd, view[pos:n])
                except BrokenPipeError:
                    self._thread.join()
                    self._check()
                    raise SessionFailed("the image processing stopped before the upload ended") from None
            self.offset += n
            self._progress()
        return limited.count

    def finish(self, total: int | None) -> ImportResult:
        self._check()
        if total is not None and total != self.offset:
            raise FormatError(f"upload declared {total} bytes but {self.offset} were received")
        os.close(self._wfd)
        self._wfd = -1
        self._thread.join()
        self._check()
        assert self._result is not None
        self.done = self._result
        self.report.update(100.0, phase="Complete", force=True)
        return self.done

    def abort(self) -> None:
        self._aborted.set()
        if self._wfd >= 0:
            os.close(self._wfd)
            self._wfd = -1
        # wait for the thread to clean up (scratch file, partial disk.img) before a new session reuses
        # the same paths; it stops at its next read of the pipe
        self._thread.join()


def open_session(vol: Volume, head: bytes, total: int | None, content_type: str,
                 report: Reporter | None = None) -> Session:
    """Choose the session for an upload whose first bytes are `head`."""
    rep = report or ProgressFile(None)
    if content_type == "archive":
        outer = detect(head) if len(head) >= HEADER_SIZE else "raw"
        compression = outer if outer in COMPRESSIONS else None
        return PipeSession(vol, total, rep, "archive",
                           lambda r: importer._import_archive(r, vol, compression, None, lambda n: None))
    if len(head) < HEADER_SIZE:
        if total is not None and total < HEADER_SIZE:
            raise FormatError("could not process image header: the upload is shorter than 512 bytes")
    fmt, compression = importer._inner_format(head)
    virtual = qcow2_virtual_size(head if compression is None else peek(compression, head, 64))
    if virtual is not None and virtual > vol.usable():
        raise TooSmall(virtual, vol.usable())
    if compression is None and fmt not in CONVERTIBLE:
        return DirectSession(vol, total, rep)
    on_src = importer._source_counter(rep, None, "TransferScratch" if fmt in CONVERTIBLE else "TransferDataFile")
    if fmt in CONVERTIBLE:
        return PipeSession(vol, total, rep, fmt, lambda r: importer._convert_via_scratch(
            r, vol, fmt, compression, None, "an upload", on_src, rep))
    return PipeSession(vol, total, rep, f"raw.{compression}",
                       lambda r: importer._stream_raw(r, vol, compression, None, on_src))


def upload_prefix(reader: Reader) -> tuple[bytes, Reader]:
    """Read the sniffing prefix of a body; returns it and a reader that replays it first."""
    head = read_upto(reader, SNIFF)
    return head, PrefixedReader(head, reader)


__all__ = ["DirectSession", "Extents", "PipeSession", "RangeError", "Session", "SessionFailed", "open_session",
           "qcow2_virtual_size", "upload_prefix"]
