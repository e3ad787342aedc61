"""Stream a byte source into a Target: read, decompress, checksum and write overlap.

Two threads: the reader fills page-aligned buffers (network `readinto` or decompressor output) and
updates the checksum; the writer skips zero blocks (64 KiB granularity) and writes the rest with
O_DIRECT. Four 8 MiB buffers circulate, so memory stays flat whatever the image size. Time follows the
data: a sparse image costs its data, not its virtual size.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..cdi import parse_checksum
from .decompress import close_reader, decoding_reader
from .errors import ChecksumMismatch, DataplaneError, InvalidChecksum
from .target import AlignedBuffer, Target, ZeroDetector

CHUNK = 8 * 1024 * 1024
GRANULARITY = 64 * 1024
BUFFERS = 4


class Reader(Protocol):
    def readinto(self, buf: memoryview) -> int: ...


@dataclass
class StreamResult:
    written: int  # bytes of image (uncompressed) seen
    data: int  # bytes actually written (non-zero)
    source_bytes: int  # bytes read from the source (compressed)


class PrefixedReader:
    """A Reader whose first bytes were already read (for sniffing): they are replayed first."""

    def __init__(self, prefix: bytes, inner: Reader):
        self.prefix = memoryview(prefix)
        self.inner = inner

    def readinto(self, buf: memoryview) -> int:
        if self.prefix:
            n = min(len(buf), len(self.prefix))
            buf[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        return int(self.inner.readinto(buf))


def read_upto(reader: Reader, n: int) -> bytes:
    """Up to `n` bytes: fewer only at the end of the stream."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = reader.readinto(view[got:])
        if k == 0:
            break
        got += k
    return bytes(buf[:got])


class Checksum:
    def __init__(self, spec: str):
        try:
            algo, digest = parse_checksum(spec)
        except ValueError as exc:
            raise InvalidChecksum(str(exc)) from None
        self.algorithm = algo
        self.expected = digest
        self._h = hashlib.new(algo)

    def update(self, data: memoryview | bytes) -> None:
        self._h.update(data)

    def verify(self) -> None:
        actual = self._h.hexdigest()
        if actual != self.expected:
            raise ChecksumMismatch(self.algorithm, self.expected, actual)


class CountingReader:
    """The source as read: feeds the checksum and the progress counter (before any decompression)."""

    def __init__(self, inner: Reader, checksum: Checksum | None = None,
                 on_source: Callable[[int], None] = lambda n: None):
        self.inner = inner
        self.checksum = checksum
        self.on_source = on_source
        self.count = 0

    def readinto(self, buf: memoryview) -> int:
        n = self.inner.readinto(buf)
        if n:
            self.count += n
            if self.checksum is not None:
                self.checksum.update(buf[:n])
            self.on_source(n)
        return n


class ReaderFile:
    """A read(n) file object over a Reader (what tarfile's stream mode wants)."""

    def __init__(self, reader: Reader, chunk: int = 1 << 20):
        self.reader = reader
        self._buf = bytearray(chunk)
        self._pending = memoryview(b"")
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        want = n
        while want != 0:
            if not self._pending:
                if self.eof:
                    break
                got = self.reader.readinto(memoryview(self._buf))
                if got == 0:
                    self.eof = True
                    break
                self._pending = memoryview(bytes(self._buf[:got]))
            take = len(self._pending) if want < 0 else min(want, len(self._pending))
            parts.append(bytes(self._pending[:take]))
            self._pending = self._pending[take:]
            if want > 0:
                want -= take
        return b"".join(parts)


def _fill(reader: Reader, buf: AlignedBuffer) -> int:
    """Fill `buf` from `reader`; short only at the end of the stream."""
    view = buf.view
    got = 0
    while got < buf.size:
        n = reader.readinto(view[got:])
        if n == 0:
            break
        got += n
    return got


_pool: list[list[AlignedBuffer]] = []
_pool_lock = threading.Lock()


def _take_buffers() -> list[AlignedBuffer]:
    """A set of buffers, reused across calls: a sparse upload is many short streams, and fresh mappings
    would cost their page faults every time."""
    with _pool_lock:
        if _pool:
            return _pool.pop()
    return [AlignedBuffer(CHUNK) for _ in range(BUFFERS)]


def _give_buffers(bufs: list[AlignedBuffer]) -> None:
    with _pool_lock:
        if len(_pool) < 2:
            _pool.append(bufs)


def stream_to_target(reader: Reader, target: Target, *, compression: str | None = None,
                     checksum: Checksum | None = None, start: int = 0,
                     progress: Callable[[int], None] = lambda n: None) -> StreamResult:
    """Copy the whole source (decompressed if `compression`) into `target` from offset `start`; raises
    DataplaneError (from either thread)."""
    free: queue.Queue[AlignedBuffer] = queue.Queue()
    full: queue.Queue[tuple[AlignedBuffer, int] | BaseException | None] = queue.Queue()
    mine = _take_buffers()
    for b in mine:
        free.put(b)
    counted = CountingReader(reader, checksum, progress)
    data = decoding_reader(compression, counted) if compression else counted
    stop = threading.Event()

    def read_loop() -> None:
        try:
            while not stop.is_set():
                buf = free.get()
                n = _fill(data, buf)
                if n:
                    full.put((buf, n))
                if n < buf.size:
                    break
            full.put(None)
        except BaseException as exc:  # handed to the writer, which re-raises it
            full.put(exc)

    t = threading.Thread(target=read_loop, name="vdisk-stream-reader", daemon=True)
    t.start()
    zero = ZeroDetector(GRANULARITY)
    offset, written = start, 0
    try:
        while True:
            item = full.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            buf, n = item
            pos = 0
            while pos < n:
                # a run of blocks that are all zero or all data
                end = min(pos + GRANULARITY, n)
                is_zero = zero.is_zero(buf, pos, end - pos)
                run_end = end
                while run_end < n:
                    nxt = min(run_end + GRANULARITY, n)
                    if zero.is_zero(buf, run_end, nxt - run_end) != is_zero:
                        break
                    run_end = nxt
                if is_zero:
                    target.zero(offset + pos, run_end - pos)
                else:
                    target.write(buf, pos, run_end - pos, offset + pos)
                    written += run_end - pos
                pos = run_end
            offset += n
            free.put(buf)
    except BaseException:
        stop.set()
        try:
            free.put_nowait(AlignedBuffer(4096))  # unblock the reader if it waits for a buffer
        except queue.Full:
            pass
        raise
    finally:
        if stop.is_set():
            close_reader(data)  # a decompressor process still running is stopped
        t.join(timeout=5)
        close_reader(data)
        if not t.is_alive():
            _give_buffers(mine)
    if checksum is not None:
        checksum.verify()
    return StreamResult(offset - start, written, counted.count)


__all__ = ["CHUNK", "Checksum", "CountingReader", "DataplaneError", "ReaderFile", "StreamResult",
           "stream_to_target"]
