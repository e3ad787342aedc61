"""What a worker pod sees, shared by every role: its volumes, its termination log, its progress file.

CDI's layout: the target at /data (Filesystem) or /dev/cdi-block-volume (Block), scratch at /scratch,
the termination message at /dev/termination-log; vdisk's node agent adds /dev/vdisk-progress.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..dataplane.errors import DataplaneError
from ..dataplane.importer import Volume
from ..dataplane.progress import ProgressFile
from ..quantity import Quantity, QuantityError

DATA_DIR = Path("/data")
BLOCK_DEVICE = Path("/dev/cdi-block-volume")
SCRATCH_DIR = Path("/scratch")
TERMINATION_LOG = Path("/dev/termination-log")
DEFAULT_PROGRESS = Path("/dev/vdisk-progress")
MESSAGE_LIMIT = 4000


def volume(size_env: str, target: Path | None = None, scratch: Path | None = None) -> Volume:
    """The target volume from the pod's mounts and env (`size_env`: the claim's size, e.g.
    IMPORTER_IMAGE_SIZE); `target`/`scratch` replace the mounts when the worker runs outside a pod."""
    path = target or (BLOCK_DEVICE if BLOCK_DEVICE.exists() else DATA_DIR)
    if not path.exists():
        raise DataplaneError(f"no target volume: neither {DATA_DIR} nor {BLOCK_DEVICE} is mounted")
    try:
        request = Quantity.parse(os.environ.get(size_env, "0") or "0").bytes
    except QuantityError as exc:
        raise DataplaneError(f"invalid {size_env}: {exc}") from exc
    scratch = scratch or SCRATCH_DIR
    vol = Volume(path=path, request=int(request), overhead=float(os.environ.get("FILESYSTEM_OVERHEAD", "0") or 0),
                 preallocation=os.environ.get("PREALLOCATION", "").lower() == "true",
                 scratch=scratch if scratch.is_dir() else None)
    if vol.block:
        vol.overhead = 0.0  # no filesystem on a device
    return vol


def progress_file() -> ProgressFile:
    """VDISK_PROGRESS_FILE, else the node agent's /dev/vdisk-progress if mounted, else nowhere."""
    env = os.environ.get("VDISK_PROGRESS_FILE")
    return ProgressFile(Path(env) if env else DEFAULT_PROGRESS if DEFAULT_PROGRESS.exists() else None)


def terminate(message: dict[str, Any] | str) -> None:
    """The termination message the controller reads (CDI's JSON or a plain error), also on stderr."""
    text = message if isinstance(message, str) else json.dumps(message)
    try:
        TERMINATION_LOG.write_text(text[:MESSAGE_LIMIT])
    except OSError:
        pass
    print(text, file=sys.stderr)
