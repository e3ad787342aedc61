"""Progress of a worker, written to a small file the node agent publishes on the pod.

The file holds one JSON object, rewritten in place (it may be a bind-mounted single file, so it is never
replaced by rename): {"percent": 45.34, "phase": "TransferDataFile", "bytes": 123, "total": 456}.
Writes are throttled; readers ignore a half-written record and read again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

MIN_INTERVAL = 0.5


class ProgressFile:
    def __init__(self, path: Path | None):
        self.path = path
        self._fd: int | None = None
        self._last = 0.0
        self._lock = threading.Lock()
        self.record: dict[str, object] = {"percent": 0.0, "phase": "Init"}
        if path is not None:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            except OSError:
                self._fd = None

    def update(self, percent: float | None = None, *, phase: str | None = None, done: int | None = None,
               total: int | None = None, force: bool = False) -> None:
        with self._lock:
            if percent is not None:
                # never go backwards within a phase: qemu-img and byte counters both only grow
                self.record["percent"] = round(max(0.0, min(100.0, percent)), 2)
            if phase is not None and phase != self.record.get("phase"):
                self.record["phase"] = phase
                force = True
            if done is not None:
                self.record["bytes"] = done
            if total is not None:
                self.record["total"] = total
            now = time.monotonic()
            if not force and now - self._last < MIN_INTERVAL:
                return
            self._last = now
            self._write()

    def _write(self) -> None:
        if self._fd is None:
            return
        data = json.dumps(self.record, separators=(",", ":")).encode()
        try:
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            self._write()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_progress(path: Path) -> dict[str, object] | None:
    """The last complete record, or None (no file yet, or caught mid-write)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None
