"""The host operations a node agent needs: commands, loop devices, filesystems, capacity.

Each wrapper runs the real tool (losetup, mkfs.xfs, mount, umount) and turns a failure into
`HostError` carrying the command and its stderr. Loop devices come from `losetup -f` and are found
again by their backing file (`losetup -j`), so nothing assumes a device number: the machine is shared.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class HostError(Exception):
    def __init__(self, cmd: list[str], code: int, stderr: str):
        super().__init__(f"{' '.join(cmd)} failed ({code}): {stderr.strip()}")
        self.cmd = cmd
        self.code = code
        self.stderr = stderr


async def run(*cmd: str, check: bool = True, timeout: float = 120) -> str:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise HostError(list(cmd), -9, f"timed out after {timeout}s") from None
    if check and proc.returncode != 0:
        raise HostError(list(cmd), proc.returncode or 0, err.decode(errors="replace"))
    return out.decode(errors="replace")


@dataclass(frozen=True)
class FsUsage:
    capacity: int
    available: int


def usage(path: Path) -> FsUsage:
    st = os.statvfs(existing_ancestor(path))
    return FsUsage(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)


def existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def shares_device_with_root(path: Path) -> bool:
    """True if `path` lives on the filesystem of `/` (HPP's HPPSharingPoolPathWithOS check)."""
    return os.stat(existing_ancestor(path)).st_dev == os.stat("/").st_dev


def is_mountpoint(path: Path) -> bool:
    return os.path.ismount(path)


# --- sparse files and loop devices ----------------------------------------------------------------------------

def create_sparse_file(path: Path, size: int) -> None:
    """A file of `size` bytes that takes no space until written (ftruncate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o660)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


def grow_file(path: Path, size: int) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


async def loop_device_of(backing: Path) -> str | None:
    out = await run("losetup", "-j", str(backing), check=False)
    for line in out.splitlines():
        dev = line.split(":", 1)[0].strip()
        if dev.startswith("/dev/loop"):
            return dev
    return None


async def attach_loop(backing: Path) -> str:
    """The loop device backed by `backing`, attaching a free one if needed."""
    dev = await loop_device_of(backing)
    if dev:
        return dev
    return (await run("losetup", "-f", "--show", str(backing))).strip()


async def detach_loop(backing: Path) -> None:
    dev = await loop_device_of(backing)
    if dev:
        await run("losetup", "-d", dev, check=False)


async def refresh_loop(backing: Path) -> None:
    dev = await loop_device_of(backing)
    if dev:
        await run("losetup", "-c", dev)


async def device_size(device: str) -> int:
    return int((await run("blockdev", "--getsize64", device)).strip())


async def has_filesystem(device: str) -> bool:
    out = await run("blkid", "-o", "value", "-s", "TYPE", device, check=False)
    return bool(out.strip())


async def make_xfs(device: str) -> None:
    # -m reflink=1: pools made from a template claim support reflink clones and snapshots (R5).
    await run("mkfs.xfs", "-q", "-m", "reflink=1", device, timeout=600)


async def mount(source: str, target: Path, *options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    args = ["mount"]
    if options:
        args += ["-o", ",".join(options)]
    await run(*args, source, str(target))


async def umount(target: Path) -> None:
    if is_mountpoint(target):
        await run("umount", str(target))


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
