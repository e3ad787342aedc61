"""Decompression as a Reader over a Reader: gz, xz, zst and bz2, bounded in memory, truncation detected.

xz and zstd run in the real tools (`xz -dc -T0`, `zstd -dc`) behind pipes: they decompress on another
core while vdisk writes, xz with several threads, and a pipe bounds what is in flight however well an
image compresses (a run of zeros can expand 30000-fold). gzip and bzip2 are inflated in-process with a
bounded output per call (zlib's and bz2's max_length). Every decoder reports a truncated or corrupt
stream as FormatError; several concatenated members/streams/frames are read as one.

`peek(kind, prefix, n)` decodes the first bytes of a stream, for format sniffing.
"""

from __future__ import annotations

import bz2
import fcntl
import io
import lzma
import os
import resource
import shutil
import signal
import subprocess
import threading
import zlib
from pathlib import Path
from typing import Any, Protocol

from .errors import DataplaneError, FormatError, TooSmall

F_SETPIPE_SZ = 1031

INPUT_CHUNK = 1 << 20
NAMES = {"gz": "gzip", "xz": "xz", "zst": "zstd", "bz2": "bzip2"}


class Reader(Protocol):
    def readinto(self, buf: memoryview) -> int: ...


class GzipReader:
    """gzip members inflated with zlib, at most len(buf) bytes per call."""

    def __init__(self, source: Reader):
        self.source = source
        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._in = bytearray(INPUT_CHUNK)
        self._tail: bytes | memoryview = b""
        self._in_member = False
        self._source_eof = False

    def readinto(self, buf: memoryview) -> int:
        while True:
            if self._tail:
                data, self._tail = self._tail, b""
            else:
                if self._source_eof:
                    if self._in_member:
                        raise FormatError("gzip: unexpected EOF: the compressed stream is truncated")
                    return 0
                n = self.source.readinto(memoryview(self._in))
                if n == 0:
                    self._source_eof = True
                    continue
                data = bytes(self._in[:n])
            self._in_member = True
            try:
                out = self._d.decompress(data, len(buf))
            except zlib.error as exc:
                raise FormatError(f"gzip: invalid compressed data: {exc}") from exc
            if self._d.eof:
                self._tail = self._d.unused_data
                self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # the next member, if any
                self._in_member = False
            else:
                self._tail = self._d.unconsumed_tail
            if out:
                buf[:len(out)] = out
                return len(out)


class Bzip2Reader:
    """bzip2 streams with the bz2 module, at most len(buf) bytes per call."""

    def __init__(self, source: Reader):
        self.source = source
        self._d: Any = None
        self._in = bytearray(INPUT_CHUNK)
        self._pending = b""
        self._source_eof = False

    def readinto(self, buf: memoryview) -> int:
        while True:
            if self._d is not None and self._d.eof:
                self._pending = self._d.unused_data + self._pending
                self._d = None
            data = b""
            if self._d is None or self._d.needs_input:
                if self._pending:
                    data, self._pending = self._pending, b""
                elif self._source_eof:
                    if self._d is not None:
                        raise FormatError("bzip2: unexpected EOF: the compressed stream is truncated")
                    return 0
                else:
                    n = self.source.readinto(memoryview(self._in))
                    if n == 0:
                        self._source_eof = True
                        continue
                    data = bytes(self._in[:n])
                if self._d is None:
                    self._d = bz2.BZ2Decompressor()
            try:
                out = self._d.decompress(data, max_length=len(buf))
            except OSError as exc:
                raise FormatError(f"bzip2: invalid compressed data: {exc}") from exc
            if out:
                buf[:len(out)] = out
                return len(out)


class ToolReader:
    """Decompression by an external tool: a feeder thread writes the source into its stdin, readinto
    reads its stdout. Errors of the source (network) win over the tool's complaint about a short input."""

    def __init__(self, source: Reader, argv: list[str], name: str):
        self.source = source
        self.name = name
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for f in (self._proc.stdin, self._proc.stdout):
            if f is not None:
                _grow_pipe(f.fileno())
        self._error: BaseException | None = None
        self._feeder = threading.Thread(target=self._feed, name=f"vdisk-{name}-feeder", daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        assert self._proc.stdin is not None
        buf = bytearray(INPUT_CHUNK)
        view = memoryview(buf)
        try:
            while True:
                n = self.source.readinto(view)
                if n == 0:
                    break
                self._proc.stdin.write(view[:n])
        except BrokenPipeError:
            pass  # the tool stopped reading (it failed): its exit status tells why
        except BaseException as exc:  # a source error: handed to the reader
            self._error = exc
            self._proc.kill()
        finally:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def readinto(self, buf: memoryview) -> int:
        out = self._proc.stdout
        assert isinstance(out, io.BufferedReader)
        n = out.readinto(buf)
        if n:
            return n
        code = self._proc.wait()
        self._feeder.join()
        if self._error is not None:
            raise self._error
        if code != 0:
            err = (self._proc.stderr.read() if self._proc.stderr else b"").decode(errors="replace").strip()
            detail = err.splitlines()[-1] if err else f"exit status {code}"
            for prefix in (f"{self.name}: ", "(stdin): ", "/*stdin*\\ : ", "/*stdin*\\: "):
                detail = detail.removeprefix(prefix)
            raise FormatError(f"{self.name}: invalid compressed data: {detail}")
        return 0

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._feeder.join(timeout=5)
        for f in (self._proc.stdout, self._proc.stderr):
            if f is not None:
                f.close()


def _tool(kind: str) -> list[str] | None:
    if kind == "xz" and shutil.which("xz"):
        return ["xz", "-dc", "-T0", "-q"]
    if kind == "zst" and shutil.which("zstd"):
        return ["zstd", "-dc", "-q"]
    return None


def decoding_reader(kind: str, source: Reader) -> Reader:
    """A Reader of the decompressed bytes of `source` (kind: gz, xz, zst, bz2)."""
    if kind == "gz":
        return GzipReader(source)
    if kind == "bz2":
        return Bzip2Reader(source)
    argv = _tool(kind)
    if argv is None:
        raise DataplaneError(f"{NAMES.get(kind, kind)} decompression needs the {NAMES.get(kind, kind)} tool on "
                             "the node")
    return ToolReader(source, argv, NAMES[kind])


def tool_writes_files(kind: str) -> bool:
    return _tool(kind) is not None


def decompress_to_file(kind: str, source: Reader, path: Path, limit: int) -> None:
    """Decompress `source` into a new regular file with the tool itself writing it (xz, zstd): the tool
    skips zero blocks (sparse output) and vdisk spends no CPU on the decompressed bytes, which matters
    when decompression is what bounds the import. The file may not grow past `limit` (RLIMIT_FSIZE):
    an image too large for the volume fails with "larger than the reported available storage"."""
    argv = _tool(kind)
    if argv is None:
        raise DataplaneError(f"{NAMES.get(kind, kind)} decompression needs the {NAMES.get(kind, kind)} tool")
    if kind == "zst":
        argv = ["zstd", "-d", "-q", "-f", "--sparse", "-o", str(path)]  # zstd writes sparse only to named files
        out_fd = subprocess.DEVNULL
    else:
        out_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)

    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out_fd, stderr=subprocess.PIPE,
                                preexec_fn=limits)
    finally:
        if isinstance(out_fd, int) and out_fd >= 0:
            os.close(out_fd)
    assert proc.stdin is not None
    _grow_pipe(proc.stdin.fileno())
    buf = bytearray(INPUT_CHUNK)
    view = memoryview(buf)
    try:
        while True:
            n = source.readinto(view)
            if n == 0:
                break
            try:
                proc.stdin.write(view[:n])
            except BrokenPipeError:
                break  # the tool failed: its status says why
        proc.stdin.close()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip()
    code = proc.wait()
    if proc.stderr:
        proc.stderr.close()
    if code == -signal.SIGXFSZ or "File too large" in err or "too large" in err.lower():
        raise TooSmall(None, limit)
    if code != 0:
        detail = err.splitlines()[-1] if err else f"exit status {code}"
        for prefix in (f"{NAMES[kind]}: ", "(stdin): ", "/*stdin*\\ : ", "/*stdin*\\: "):
            detail = detail.removeprefix(prefix)
        raise FormatError(f"{NAMES[kind]}: invalid compressed data: {detail}")


def _grow_pipe(fd: int) -> None:
    """1 MiB pipes: fewer wake-ups between vdisk and the tool (the default is 64 KiB)."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass


def close_reader(reader: Reader) -> None:
    close = getattr(reader, "close", None)
    if close is not None:
        close()


def peek(kind: str, prefix: bytes, n: int) -> bytes:
    """Up to `n` decompressed bytes from the start of a stream (errors from the cut-off end ignored)."""
    try:
        if kind == "gz":
            return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(prefix, n)
        if kind == "bz2":
            return bz2.BZ2Decompressor().decompress(prefix, max_length=n)
        if kind == "xz":
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(prefix, max_length=n)
        if kind == "zst":
            import zstandard

            return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(prefix)).read(n)
    except (zlib.error, OSError, lzma.LZMAError, EOFError) as exc:
        raise FormatError(f"{NAMES.get(kind, kind)}: invalid compressed data: {exc}") from exc
    except Exception as exc:  # zstandard.ZstdError and friends
        raise FormatError(f"{NAMES.get(kind, kind)}: invalid compressed data: {exc}") from exc
    return b""
