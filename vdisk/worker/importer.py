"""The importer pod: CDI's importer environment in, a disk and a termination message out.

Environment (names as CDI's pkg/common and pkg/controller/import-controller.go: makeImportEnv):
  IMPORTER_SOURCE         http | registry | none (a blank disk)
  IMPORTER_ENDPOINT       the URL (http[s]://... or docker://...)
  IMPORTER_CONTENTTYPE    kubevirt (a disk image) | archive (a tar unpacked into the volume)
  IMPORTER_IMAGE_SIZE     the claim's request, e.g. "10Gi"
  FILESYSTEM_OVERHEAD     fraction reserved on Filesystem volumes, e.g. "0.055"
  PREALLOCATION           "true" to preallocate the disk
  INSECURE_TLS            "true" to skip TLS verification (insecure registries)
  IMPORTER_CHECKSUM       "sha256:<hex>" (md5, sha1, sha256, sha512), verified while streaming
  IMPORTER_ACCESS_KEY_ID / IMPORTER_SECRET_KEY   basic auth (http) or registry credentials
  IMPORTER_EXTRA_HEADER_<n>                      "Name: value" headers; files under /extraheaders/* too
  IMPORTER_CERT_DIR       CA certificates (every file is trusted), default /certs
  IMPORTER_REGISTRY_IMAGE_ARCHITECTURE           platform to pick from a manifest list (default amd64)
  IMPORTER_STALL_TIMEOUT  seconds a source may stay silent before the read is given up (default 60)
  VDISK_PROGRESS_FILE     where progress is written (default /dev/vdisk-progress when present)
Volumes: the target at /data (Filesystem) or /dev/cdi-block-volume (Block); scratch at /scratch.

Termination message (/dev/termination-log), CDI's common.TerminationMessage as JSON:
  success                 {"message": "Import Complete", "preallocationApplied": bool, ...}, exit 0
  scratch needed          {"message": ..., "scratchSpaceRequired": true}, exit 0 (the controller adds scratch)
  fatal (checksum, unsafe image)  {"message": ..., "fatalError": true}, exit 0: retrying cannot help
  anything else           the message as plain text, exit 1 (the pod restarts with backoff)
"""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path

from ..dataplane.errors import DataplaneError, ScratchRequired
from ..dataplane.http import HttpSpec, parse_header_lines
from ..dataplane.importer import ImportResult, create_blank, import_http, import_registry
from ..dataplane.progress import ProgressFile
from ..dataplane.registry import RegistrySpec, parse_url
from .pod import DATA_DIR, progress_file, terminate, volume

log = logging.getLogger("vdisk.worker.importer")



def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _flag(name: str) -> bool:
    return _env(name).lower() == "true"


def _ca_files() -> list[Path]:
    cert_dir = Path(_env("IMPORTER_CERT_DIR", "/certs"))
    if not cert_dir.is_dir():
        return []
    return sorted(p for p in cert_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def _headers() -> list[tuple[str, str]]:
    lines = [v for k, v in sorted(os.environ.items()) if k.startswith("IMPORTER_EXTRA_HEADER_")]
    root = Path("/extraheaders")
    if root.is_dir():
        for f in sorted(root.rglob("*")):
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts):
                lines.append(f.read_text().strip())
    return parse_header_lines(lines)


def run_import(report: ProgressFile) -> ImportResult:
    source = _env("IMPORTER_SOURCE", "http")
    vol = volume("IMPORTER_IMAGE_SIZE")
    user = _env("IMPORTER_ACCESS_KEY_ID") or None
    password = _env("IMPORTER_SECRET_KEY") or None
    if source == "none":
        return create_blank(vol)
    endpoint = _env("IMPORTER_ENDPOINT")
    if source == "http":
        spec = HttpSpec(url=endpoint, username=user, password=password, headers=_headers(), ca_files=_ca_files(),
                        insecure=_flag("INSECURE_TLS"),
                        read_timeout=float(_env("IMPORTER_STALL_TIMEOUT", "60") or 60))
        return import_http(spec, vol, checksum=_env("IMPORTER_CHECKSUM") or None,
                           content_type=_env("IMPORTER_CONTENTTYPE", "kubevirt") or "kubevirt", report=report)
    if source == "registry":
        ref = parse_url(endpoint)
        rspec = RegistrySpec(url=endpoint, username=user, password=password, ca_files=_ca_files(),
                             insecure_registries=[ref.host] if _flag("INSECURE_TLS") else [],
                             architecture=_env("IMPORTER_REGISTRY_IMAGE_ARCHITECTURE", "amd64") or "amd64")
        return import_registry(rspec, vol, report=report)
    raise DataplaneError(f"unknown IMPORTER_SOURCE {source!r}: expected http, registry or none")


def main() -> int:
    report = progress_file()
    try:
        result = run_import(report)
    except ScratchRequired as exc:
        log.info("%s", exc.message)
        terminate({"message": exc.message, "scratchSpaceRequired": True})
        return 0
    except DataplaneError as exc:
        log.error("import failed: %s", exc.message)
        if exc.fatal:
            terminate({"message": exc.message, "fatalError": True, "reason": exc.reason})
            return 0
        terminate(exc.message)
        return 1
    except Exception as exc:  # a bug or an unexpected OS error: log it whole, report it short
        traceback.print_exc()
        terminate(f"Unable to process data: {exc}")
        return 1
    if result.route != "archive" and DATA_DIR.is_dir() and (DATA_DIR / "disk.img").exists():
        os.chmod(DATA_DIR / "disk.img", 0o660)
    report.update(100.0, phase="Complete", force=True)
    report.close()
    log.info("import complete route=%s format=%s virtual_size=%d data=%d preallocated=%s", result.route,
             result.format, result.virtual_size, result.data_written, result.preallocation_applied)
    terminate({"message": "Import Complete", "preallocationApplied": result.preallocation_applied,
                "vdisk": {"route": result.route, "preallocation": result.preallocation, "format": result.format, "virtualSize": result.virtual_size,
                          "dataWritten": result.data_written}})
    return 0
