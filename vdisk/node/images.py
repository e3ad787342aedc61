"""Container images, as a node that runs pods as host processes understands them.

vdisk has no container runtime: a pod's containers are processes on the node, in a private mount
namespace where the pod's volumes appear at their mount paths. An image therefore names a program:
- pause images sleep until stopped;
- vdisk's worker images (and CDI's image names, so CDI-shaped pods work) run `python -m vdisk.worker`;
- common userland images (busybox, alpine, fedora, ubi, debian, ubuntu) run the container's
  command with the host's userland;
- anything else cannot be "pulled": the container waits with ErrImagePull, as on a real node.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

PAUSE = ("registry.k8s.io/pause", "k8s.gcr.io/pause", "gcr.io/google_containers/pause", "vdisk.io/pause")
USERLAND = ("busybox", "alpine", "fedora", "debian", "ubuntu", "centos", "ubi8", "ubi9", "ubi", "ubi-minimal")
WORKERS = {
    "cdi-importer": "importer", "cdi-uploadserver": "uploadserver", "cdi-cloner": "cloner",
    "vdisk-importer": "importer", "vdisk-uploadserver": "uploadserver", "vdisk-cloner": "cloner",
}


class ImagePullError(Exception):
    pass


def _repository(image: str) -> str:
    """`docker.io/library/busybox:1.36@sha256:...` -> `docker.io/library/busybox`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: len(name) - len(last[-1]) + last[-1].index(":")]
    return name


@dataclass(frozen=True)
class Program:
    kind: str  # "pause", "userland", "worker"
    argv: tuple[str, ...]


def program_for(image: str, command: list[str] | None, args: list[str] | None) -> Program:
    repo = _repository(image)
    base = repo.rsplit("/", 1)[-1]
    if repo in PAUSE or base == "pause":
        return Program("pause", ("sleep", "infinity"))
    if base in WORKERS:
        role = WORKERS[base]
        return Program("worker", (sys.executable, "-m", "vdisk.worker", role, *(args or [])))
    if base in USERLAND:
        argv = list(command or []) + list(args or [])
        if not argv:
            argv = ["sh"]
        return Program("userland", tuple(argv))
    raise ImagePullError(f'failed to pull image "{image}": vdisk runs pods as processes on the node and knows '
                         f"pause images, vdisk/CDI worker images and userland images ({', '.join(USERLAND)})")
