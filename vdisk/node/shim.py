"""The process that becomes a pod's container: builds its filesystem view, then execs the program.

Run by the node agent as `unshare --mount --propagation private python -m vdisk.node.shim SPEC.json`.
In its private mount namespace it assembles a root the way a container runtime would, but from the
host's own userland: a tmpfs root with every top-level host directory bind-mounted into it, a fresh
/dev (standard character devices, devpts, shm, the container's termination-message and progress
files and the pod's Block volumes as device nodes), and the pod's volumes bind-mounted at their mount paths. Then
it joins the pod's cgroups, chroots, drops to the requested user and execs. Nothing of this is seen
outside the namespace, and nothing is created on the host's own filesystem: a mount path below an
existing host directory gets a tmpfs over its deepest existing ancestor (inside the namespace only).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

CHAR_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
SKIP_TOP = {"dev", "proc", "sys", "lost+found"}


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_root(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "vdisk-root", str(root))
    for entry in sorted(Path("/").iterdir()):
        name = entry.name
        if name in SKIP_TOP or entry.is_symlink() and not entry.exists():
            continue
        target = root / name
        if entry.is_symlink():
            target.symlink_to(os.readlink(entry))
        elif entry.is_dir():
            target.mkdir()
            sh("mount", "--rbind", str(entry), str(target))
        elif entry.is_file():
            target.touch()
            sh("mount", "--bind", str(entry), str(target))
    for name in ("proc", "sys"):
        (root / name).mkdir()
        sh("mount", "--rbind", f"/{name}", str(root / name))
    dev = root / "dev"
    dev.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "mode=0755,nosuid", "vdisk-dev", str(dev))
    for name, (major, minor) in CHAR_DEVICES.items():
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)
    (dev / "pts").mkdir()
    sh("mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "devpts", str(dev / "pts"))
    (dev / "ptmx").symlink_to("pts/ptmx")
    (dev / "shm").mkdir()
    sh("mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "shm", str(dev / "shm"))
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        (dev / name).symlink_to(f"/proc/self/fd/{i}")
    (dev / "fd").symlink_to("/proc/self/fd")


def ensure_target(root: Path, target: str, is_file: bool) -> Path:
    """The path of `target` inside `root`, created in the pod's own tmpfs layers only."""
    path = root / target.lstrip("/")
    if path.exists():
        return path
    top = root / Path(target.lstrip("/")).parts[0]
    if top.exists() and os.path.ismount(top) and not str(path).startswith(str(root / "dev")):
        # below a host directory: shadow its deepest existing ancestor with a tmpfs
        anc = path.parent
        while not anc.exists():
            anc = anc.parent
        sh("mount", "-t", "tmpfs", "-o", "mode=0755", "vdisk-mnt", str(anc))
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_file:
        path.touch()
    else:
        path.mkdir(exist_ok=True)
    return path


def main(spec_path: str) -> None:
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
    root = Path(spec["root"])
    make_root(root)
    for m in spec.get("mounts", []):
        source = m["source"]
        target = ensure_target(root, m["target"], Path(source).is_file())
        sh("mount", "--bind", source, str(target))
        if m.get("readOnly"):
            sh("mount", "-o", "remount,bind,ro", str(target))
    for d in spec.get("devices", []):
        rdev = os.stat(d["source"]).st_rdev
        target = ensure_target(root, d["target"], True)
        target.unlink()
        os.mknod(target, 0o660 | stat.S_IFBLK, rdev)
    for f in [spec.get("terminationLog"), spec.get("progressFile")]:
        if f:
            target = ensure_target(root, f["target"], True)
            sh("mount", "--bind", f["source"], str(target))
    for cg in spec.get("cgroups", []):
        try:
            Path(cg, "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass
    os.chroot(root)
    os.chdir(spec.get("workingDir") or "/")
    gid, uid = spec.get("gid"), spec.get("uid")
    if gid is not None:
        os.setgroups([])
        os.setgid(int(gid))
    if uid is not None:
        os.setuid(int(uid))
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec.get("env") or {})
    except OSError as exc:
        print(f'exec: "{argv[0]}": {exc.strerror}', file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1])
