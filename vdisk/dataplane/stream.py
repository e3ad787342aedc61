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

from .decompress import Decoder
from .errors import ChecksumMismatch, DataplaneError, FormatError
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


class Checksum:
    ALGORITHMS = ("md5", "sha1", "sha256", "sha512")

    def __init__(self, spec: str):
        algo, _, digest = spec.partition(":")
        algo = algo.lower()
        if algo not in self.ALGORITHMS or not digest:
            raise FormatError(f"invalid checksum {spec!r}: expected <algorithm>:<hex>, algorithm one of "
                              f"{', '.join(self.ALGORITHMS)}")
        self.algorithm = algo
        self.expected = digest.lower()
        self._h = hashlib.new(algo)

    def update(self, data: memoryview | bytes) -> None:
        self._h.update(data)

    def verify(self) -> None:
        actual = self._h.hexdigest()
        if actual != self.expected:
            raise ChecksumMismatch(self.algorithm, self.expected, actual)


class _Filler:
    """Turns a reader (+ optional decoder) into full buffers of decoded bytes."""

    def __init__(self, reader: Reader, decoder: Decoder | None, checksum: Checksum | None,
                 on_source: Callable[[int], None], prefix: bytes = b""):
        self.reader = reader
        self.decoder = decoder
        self.checksum = checksum
        self.on_source = on_source
        self.pending = memoryview(b"")  # decoded bytes not yet copied into a buffer (a view: no re-copies)
        self.prefix = prefix  # bytes already read from the source (sniffing) to replay first
        self.eof = False
        self.source_bytes = 0
        self._raw = AlignedBuffer(1 << 20) if decoder is not None else None

    def _take_source(self, into: memoryview) -> int:
        if self.prefix:
            n = min(len(self.prefix), len(into))
            into[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
        else:
            n = self.reader.readinto(into)
        if n:
            self.source_bytes += n
            if self.checksum is not None:
                self.checksum.update(into[:n])
            self.on_source(n)
        return n

    def fill(self, buf: AlignedBuffer) -> int:
        size = buf.size
        got = 0
        view = buf.view
        while got < size:
            if self.decoder is None:
                n = self._take_source(view[got:])
                if n == 0:
                    self.eof = True
                    break
                got += n
                continue
            if not self.pending:
                if self.eof:
                    break
                assert self._raw is not None
                n = self._take_source(self._raw.view)
                if n == 0:
                    self.pending = memoryview(self.decoder.flush())
                    self.eof = True
                    if not self.pending:
                        break
                else:
                    self.pending = memoryview(self.decoder.decode(self._raw.view[:n]))
                    continue
            take = min(len(self.pending), size - got)
            view[got:got + take] = self.pending[:take]
            self.pending = self.pending[take:]
            got += take
        return got


def stream_to_target(reader: Reader, target: Target, *, decoder: Decoder | None = None,
                     checksum: Checksum | None = None, prefix: bytes = b"",
                     progress: Callable[[int], None] = lambda n: None) -> StreamResult:
    """Copy the whole source into `target` from offset 0; raises DataplaneError (from either thread)."""
    free: queue.Queue[AlignedBuffer] = queue.Queue()
    full: queue.Queue[tuple[AlignedBuffer, int] | BaseException | None] = queue.Queue()
    for _ in range(BUFFERS):
        free.put(AlignedBuffer(CHUNK))
    filler = _Filler(reader, decoder, checksum, progress, prefix)
    stop = threading.Event()

    def read_loop() -> None:
        try:
            while not stop.is_set():
                buf = free.get()
                n = filler.fill(buf)
                if n:
                    full.put((buf, n))
                if filler.eof or n == 0:
                    break
            full.put(None)
        except BaseException as exc:  # handed to the writer, which re-raises it
            full.put(exc)

    t = threading.Thread(target=read_loop, name="vdisk-stream-reader", daemon=True)
    t.start()
    zero = ZeroDetector(GRANULARITY)
    offset = data = 0
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
                    data += run_end - pos
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
        t.join(timeout=5)
    if checksum is not None:
        checksum.verify()
    return StreamResult(offset, data, filler.source_bytes)


__all__ = ["CHUNK", "Checksum", "DataplaneError", "StreamResult", "stream_to_target"]
