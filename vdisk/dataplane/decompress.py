"""Streaming decompressors with one shape: `decode(bytes) -> bytes`, `flush() -> bytes`, `eof`.

Like httpx's _decoders.py: each wraps a library decompressor and turns its errors into FormatError.
gzip streams may have several members (pigz, concatenated files); xz likewise; zstd frames too.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Protocol

from .errors import FormatError


class Decoder(Protocol):
    def decode(self, data: bytes | memoryview) -> bytes: ...

    def flush(self) -> bytes: ...


class GzipDecoder:
    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._in_member = False

    def decode(self, data: bytes | memoryview) -> bytes:
        out = []
        try:
            while data:
                self._in_member = True
                out.append(self._d.decompress(data))
                if self._d.eof:
                    data = self._d.unused_data
                    self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # the next gzip member
                    self._in_member = False
                else:
                    data = b""
        except zlib.error as exc:
            raise FormatError(f"gzip: invalid compressed data: {exc}") from exc
        return b"".join(out)

    def flush(self) -> bytes:
        if self._in_member:
            raise FormatError("gzip: unexpected EOF: the compressed stream is truncated")
        return b""


class XzDecoder:
    def __init__(self) -> None:
        self._d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        self._in_stream = False

    def decode(self, data: bytes | memoryview) -> bytes:
        out = []
        try:
            while data:
                self._in_stream = True
                out.append(self._d.decompress(data))
                if self._d.eof:
                    data = self._d.unused_data.lstrip(b"\x00")  # stream padding between xz streams
                    self._d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
                    self._in_stream = False
                else:
                    data = b""
        except lzma.LZMAError as exc:
            raise FormatError(f"xz: invalid compressed data: {exc}") from exc
        return b"".join(out)

    def flush(self) -> bytes:
        if self._in_stream:
            raise FormatError("xz: unexpected EOF: the compressed stream is truncated")
        return b""


class ZstdDecoder:
    def __init__(self) -> None:
        import zstandard

        self._zstd = zstandard
        self._dctx = zstandard.ZstdDecompressor()
        self._d = self._dctx.decompressobj()
        self._in_frame = False

    def decode(self, data: bytes | memoryview) -> bytes:
        out = []
        try:
            while data:
                self._in_frame = True
                out.append(self._d.decompress(data))
                if self._d.eof:
                    data = self._d.unused_data
                    self._d = self._dctx.decompressobj()
                    self._in_frame = False
                else:
                    data = b""
        except self._zstd.ZstdError as exc:
            raise FormatError(f"zstd: invalid compressed data: {exc}") from exc
        return b"".join(out)

    def flush(self) -> bytes:
        if self._in_frame:
            raise FormatError("zstd: unexpected EOF: the compressed stream is truncated")
        return b""


class Bzip2Decoder:
    def __init__(self) -> None:
        self._d = bz2.BZ2Decompressor()
        self._in_stream = False

    def decode(self, data: bytes | memoryview) -> bytes:
        out = []
        try:
            while data:
                self._in_stream = True
                out.append(self._d.decompress(data))
                if self._d.eof:
                    data = self._d.unused_data
                    self._d = bz2.BZ2Decompressor()
                    self._in_stream = False
                else:
                    data = b""
        except OSError as exc:
            raise FormatError(f"bzip2: invalid compressed data: {exc}") from exc
        return b"".join(out)

    def flush(self) -> bytes:
        if self._in_stream:
            raise FormatError("bzip2: unexpected EOF: the compressed stream is truncated")
        return b""


DECODERS: dict[str, type[GzipDecoder] | type[XzDecoder] | type[ZstdDecoder] | type[Bzip2Decoder]] = {
    "gz": GzipDecoder, "xz": XzDecoder, "zst": ZstdDecoder, "bz2": Bzip2Decoder}


def decoder_for(kind: str) -> Decoder:
    return DECODERS[kind]()
