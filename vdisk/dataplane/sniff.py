"""Format detection from an image's first bytes.

Upstream: CDI pkg/image/filefmt.go and pkg/importer/format-readers.go (the magic table; CDI reads 512
bytes and peels compression layers until a disk format or nothing matches). ISO and raw have no magic
and are treated as raw; tar is reported so archive imports can use it.
"""

from __future__ import annotations

HEADER_SIZE = 512

# name -> (offset, magic)
MAGIC: dict[str, tuple[int, bytes]] = {
    "gz": (0, b"\x1f\x8b"),
    "zst": (0, b"\x28\xb5\x2f\xfd"),
    "xz": (0, b"\xfd7zXZ\x00"),
    "bz2": (0, b"BZh"),
    "qcow2": (0, b"QFI\xfb"),
    "vmdk": (0, b"KDMV"),
    "vdi": (0x40, b"\x7f\x10\xda\xbe"),
    "vpc": (0, b"conectix"),
    "vhdx": (0, b"vhdxfile"),
    "tar": (0x101, b"ustar"),
}
COMPRESSIONS = ("gz", "zst", "xz", "bz2")
CONVERTIBLE = ("qcow2", "vmdk", "vdi", "vpc", "vhdx")


def detect(header: bytes) -> str:
    """'gz', 'zst', 'xz', 'bz2', 'qcow2', 'vmdk', 'vdi', 'vpc', 'vhdx', 'tar', or 'raw'."""
    for name, (offset, magic) in MAGIC.items():
        if header[offset:offset + len(magic)] == magic:
            return name
    return "raw"


def qcow2_virtual_size(header: bytes) -> int | None:
    """The virtual size field of a qcow2 header (bytes 24..32, big endian)."""
    if len(header) >= 32 and header[:4] == b"QFI\xfb":
        return int.from_bytes(header[24:32], "big")
    return None
