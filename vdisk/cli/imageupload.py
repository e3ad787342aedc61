"""`virtctl image-upload dv|pvc NAME`: create the target, wait for its upload server, send the file.

Upstream: kubevirt pkg/virtctl/imageupload (flags, messages, the DV/PVC it creates, the waits, the
token request named token-for-virtctl-*). Beyond it: the upload resumes after a broken connection (and
a new run for the same file continues a killed one), raw files go sparse, `--retry` counts retries
with seconds-long backoff, and a WaitForFirstConsumer target is reported at once instead of waiting.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .. import cdi
from ..dataplane.uploadclient import Uploader, UploadError
from ..quantity import Quantity, QuantityError
from .apiclient import API, APIError, ConfigError, Connection, load_connection

Obj = dict[str, Any]

ANN_UPLOAD_TARGET = cdi.ANN_UPLOAD_TARGET
ANN_CONTENT_TYPE = cdi.ANN_CONTENT_TYPE
ANN_POD_READY = cdi.ANN_POD_READY
ANN_POD_PHASE = cdi.ANN_POD_PHASE
ANN_FORCE_BIND = cdi.ANN_IMMEDIATE_BINDING
ANN_POD_RESTARTS = cdi.ANN_POD_RESTARTS
ANN_RUNNING_MESSAGE = cdi.ANN_RUNNING_MESSAGE
LABEL_APPLY_PROFILE = cdi.LABEL_APPLY_PROFILE
PROCESSING_TIMEOUT = 24 * 3600


class UsageError(Exception):
    pass


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", help="dv or pvc")
    p.add_argument("name", nargs="?")
    p.add_argument("--image-path", default="", help="path to the local VM image")
    p.add_argument("--archive-path", default="", help="path to a local tar archive to unpack into the volume")
    p.add_argument("--size", default="", help="size of the volume to create (e.g. 10Gi)")
    p.add_argument("--pvc-size", default="", help=argparse.SUPPRESS)
    p.add_argument("--pvc-name", default="", help=argparse.SUPPRESS)
    p.add_argument("--storage-class", default="")
    p.add_argument("--access-mode", default="")
    p.add_argument("--volume-mode", default="", help="block or filesystem")
    p.add_argument("--block-volume", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-create", action="store_true", help="upload to an existing DataVolume or PVC")
    p.add_argument("--force-bind", action="store_true", help="bind a WaitForFirstConsumer volume at once")
    p.add_argument("--insecure", action="store_true", help="do not verify the upload proxy's certificate")
    p.add_argument("--uploadproxy-url", default="", help="upload proxy URL (default: from CDIConfig)")
    p.add_argument("--wait-secs", type=int, default=300, help="seconds to wait for the upload server")
    p.add_argument("--retry", type=int, default=5, help="retries after a failed transfer")
    p.add_argument("--datasource", action="store_true",
                   help="create or update a DataSource of the same name pointing at the uploaded volume")
    for flag in ("--default-instancetype", "--default-instancetype-kind", "--default-preference",
                 "--default-preference-kind"):
        p.add_argument(flag, default="", help=f"the {flag[2:]} label on the created DataVolume/PVC (and DataSource)")
    add_global_arguments(p, argparse.SUPPRESS)


def add_global_arguments(p: argparse.ArgumentParser, default: Any = None) -> None:
    """kubectl's connection flags: before the command (virtctl -n ns image-upload ...) or after it."""
    p.add_argument("-n", "--namespace", default="" if default is None else default)
    p.add_argument("--kubeconfig", default=default)
    p.add_argument("--context", default=default)


LABEL_PREFIX = "instancetype.kubevirt.io/"


def instancetype_labels(args: argparse.Namespace) -> dict[str, str]:
    return {LABEL_PREFIX + key: value for key, value in (
        ("default-instancetype", args.default_instancetype),
        ("default-instancetype-kind", args.default_instancetype_kind),
        ("default-preference", args.default_preference),
        ("default-preference-kind", args.default_preference_kind)) if value}


def validate(args: argparse.Namespace) -> tuple[str, str, str, Path, str | None]:
    """(kind, name, content type, path, size) or UsageError with virtctl's messages."""
    if args.pvc_name:
        if args.kind or args.name:
            raise UsageError("cannot use --pvc-name and args")
        kind, name = "pvc", args.pvc_name
    else:
        if not args.kind or not args.name:
            raise UsageError("expecting two args: type (dv|pvc) and name")
        kind, name = args.kind.lower(), args.name
        if kind not in ("dv", "pvc"):
            raise UsageError(f"invalid resource type {args.kind}")
    if args.image_path and args.archive_path:
        raise UsageError("cannot handle both image-path and archive-path, provide only one")
    if not args.image_path and not args.archive_path:
        raise UsageError("either image-path or archive-path must be provided")
    content = "archive" if args.archive_path else "kubevirt"
    if args.default_instancetype_kind and not args.default_instancetype:
        raise UsageError("--default-instancetype must be provided with --default-instancetype-kind")
    if args.default_preference_kind and not args.default_preference:
        raise UsageError("--default-preference must be provided with --default-preference-kind")
    if args.no_create and (args.default_instancetype or args.default_preference):
        raise UsageError("--default-instancetype and --default-preference cannot be used with --no-create")
    if args.pvc_size and args.size and args.pvc_size != args.size:
        raise UsageError("--pvc-size and --size can not be specified at the same time")
    size = args.size or args.pvc_size or None
    if size:
        try:
            Quantity.parse(size)
        except QuantityError:
            raise UsageError(f"validation failed for size={size}: quantities must match the regular expression "
                             "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'") from None
    if not args.no_create and not size:
        raise UsageError("when creating a resource, the size must be specified")
    mode = args.volume_mode.lower()
    if args.block_volume:
        if mode and mode != "block":
            raise UsageError("incompatible --volume-mode and --block-volume")
        mode = "block"
    if mode not in ("", "block", "filesystem"):
        raise UsageError(f"Invalid volume mode '{args.volume_mode}'. Valid values are 'block' and 'filesystem'.")
    args.volume_mode = mode
    if content == "archive" and mode == "block":
        raise UsageError("In archive upload the volume mode should always be filesystem")
    if args.access_mode == "ReadOnlyMany":
        raise UsageError("cannot upload to a readonly volume, use either ReadWriteOnce or ReadWriteMany if supported")
    path = Path(args.archive_path or args.image_path).expanduser()
    if not path.is_file():
        raise UsageError(f"cannot open {path}: no such file")
    try:  # fail before anything is created, as virtctl opens the file first
        os.close(os.open(path, os.O_RDONLY))
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror.lower() if exc.strerror else exc}") from None
    return kind, name, content, path, size


class Progress:
    """A progress line: bytes, percent, rate and ETA (redrawn on a terminal, every few seconds otherwise)."""

    def __init__(self, out: Any = sys.stdout):
        self.out = out
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.t0: float | None = None
        self.last = 0.0
        self.base = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.t0 is None:  # the clock starts with the first byte (a resumed upload starts further on)
            self.t0, self.base = now, done
        if done < total and now - self.last < (0.2 if self.tty else 2.0):
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-6)
        rate = max(done - self.base, 0) / elapsed
        pct = done * 100.0 / total if total else 100.0
        eta = (total - done) / rate if rate > 0 else 0
        width = 30
        filled = int(width * pct / 100)
        line = (f"{_human(done)} / {_human(total)} [{'=' * filled}{'>' if filled < width else ''}"
                f"{' ' * max(0, width - filled - 1)}] {pct:6.2f}% {_human(rate)}/s ETA {int(eta)}s")
        if self.tty:
            self.out.write("\r" + line)
            if done >= total:
                self.out.write("\n")
        else:
            self.out.write(line + "\n")
        self.out.flush()


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.2f} TiB"


class ImageUpload:
    def __init__(self, args: argparse.Namespace, conn: Connection, api: API, namespace: str):
        self.args = args
        self.conn = conn
        self.api = api
        self.ns = namespace
        self.kind = "dv"

    def _dv_path(self, name: str = "") -> str:
        return f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{self.ns}/datavolumes" + (f"/{name}" if name else "")

    def _pvc_path(self, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims" + (f"/{name}" if name else "")

    def check_existing(self, kind: str, name: str, content: str) -> bool:
        """True if the target exists (and can take the upload); raises with virtctl's messages."""
        if kind == "dv":
            dv = self.api.get(self._dv_path(name))
            if dv is None:
                if self.args.no_create:
                    raise UsageError(f"DataVolume {self.ns}/{name} not found: use it without --no-create to "
                                     "create it")
                return False
            if "upload" not in ((dv.get("spec") or {}).get("source") or {}):
                raise UsageError(f"DataVolume {name} is not an upload DataVolume (spec.source.upload)")
        pvc = self.api.get(self._pvc_path(name))
        if pvc is None:
            if kind == "pvc" and self.args.no_create:
                raise UsageError(f"PVC {self.ns}/{name} not found")
            return kind == "dv"
        ann = pvc["metadata"].get("annotations") or {}
        if ann.get(ANN_POD_PHASE) == "Succeeded":
            raise UsageError(f"PVC {name} already successfully imported/cloned/updated")
        if ANN_UPLOAD_TARGET not in ann:
            if not self.args.no_create:
                raise UsageError(f"PVC {name} not available for upload")
            self.api.patch(self._pvc_path(name), {"metadata": {"annotations": {ANN_UPLOAD_TARGET: "",
                                                                               ANN_CONTENT_TYPE: content}}})
        elif content == "archive" and ann.get(ANN_CONTENT_TYPE) != "archive":
            raise UsageError(f"PVC {name} doesn't have archive contentType annotation")
        if not self.args.no_create:
            print(f"Using existing PVC {self.ns}/{name}")
        return True

    def create(self, kind: str, name: str, content: str, size: str) -> None:
        a = self.args
        if a.storage_class and self.api.get(f"/apis/storage.k8s.io/v1/storageclasses/{a.storage_class}") is None:
            raise UsageError(f'storageclasses.storage.k8s.io "{a.storage_class}" not found')
        ann = {ANN_FORCE_BIND: "true"} if a.force_bind else {}
        mode = {"block": "Block", "filesystem": "Filesystem"}.get(a.volume_mode)
        if kind == "dv":
            storage: Obj = {"resources": {"requests": {"storage": size}}}
            if a.storage_class:
                storage["storageClassName"] = a.storage_class
            if a.access_mode:
                storage["accessModes"] = [a.access_mode]
            if mode:
                storage["volumeMode"] = mode
            spec: Obj = {"source": {"upload": {}}, "storage": storage}
            if content == "archive":
                spec["contentType"] = "archive"
            self.api.create(self._dv_path(), {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                                              "metadata": {"name": name, "namespace": self.ns, "annotations": ann,
                                                           "labels": instancetype_labels(a)},
                                              "spec": spec})
            print(f"DataVolume {self.ns}/{name} created")
            return
        # modes left to the StorageProfile: the server renders claims labelled applyStorageProfile
        pvc_spec: Obj = {"resources": {"requests": {"storage": size}}, "volumeMode": mode or "FromStorageProfile"}
        if a.access_mode:
            pvc_spec["accessModes"] = [a.access_mode]
        if a.storage_class:
            pvc_spec["storageClassName"] = a.storage_class
        self.api.create(self._pvc_path(), {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": self.ns,
                         "labels": {LABEL_APPLY_PROFILE: "true", **instancetype_labels(a)},
                         "annotations": {**ann, ANN_UPLOAD_TARGET: "", ANN_CONTENT_TYPE: content}},
            "spec": pvc_spec})
        print(f"PVC {self.ns}/{name} created")

    def _events(self, name: str) -> list[Obj]:
        return self.api.list(f"/api/v1/namespaces/{self.ns}/events", fieldSelector=f"involvedObject.name={name}")

    def wait_ready(self, kind: str, name: str) -> None:
        deadline = time.monotonic() + self.args.wait_secs
        said_waiting = False
        while True:
            if kind == "dv":
                dv = self.api.get(self._dv_path(name)) or {}
                phase = (dv.get("status") or {}).get("phase", "")
                if phase == "UploadReady":
                    return
                if phase == "Succeeded":
                    raise UsageError(f"DataVolume {name} already successfully imported/cloned/updated")
                if phase in ("WaitForFirstConsumer", "PendingPopulation") and not self.args.force_bind:
                    raise UsageError(f"cannot upload to DataVolume in {phase} phase, make sure the PVC is Bound, or "
                                     "use force-bind flag")
            elif ((self.api.get(self._pvc_path(name)) or {}).get("metadata", {}).get("annotations") or {}).get(
                    ANN_POD_READY) == "true":
                return
            for ev in self._events(name):
                if ev.get("reason") == "ProvisioningFailed" and "optimistic lock" not in ev.get("message", ""):
                    raise UsageError(f"Provisioning failed: {ev.get('message')}")
                if ev.get("reason") == "ErrClaimNotValid":
                    raise UsageError(f"Claim not valid: {ev.get('message')}")
            if time.monotonic() > deadline:
                raise UsageError(f"timed out waiting for the upload server of {name} to be ready "
                                 f"(--wait-secs {self.args.wait_secs})")
            if not said_waiting:
                print(f"Waiting for PVC {name} upload pod to be ready...")
                said_waiting = True
            time.sleep(1)

    def token(self, name: str) -> str:
        obj = self.api.create(f"/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/{self.ns}/uploadtokenrequests", {
            "apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
            "metadata": {"generateName": "token-for-virtctl-", "namespace": self.ns}, "spec": {"pvcName": name}})
        return str(obj["status"]["token"])

    def proxy_url(self) -> str:
        if self.args.uploadproxy_url:
            url = str(self.args.uploadproxy_url)
        else:
            cfg = self.api.get("/apis/cdi.kubevirt.io/v1beta1/cdiconfigs/config") or {}
            url = (cfg.get("spec") or {}).get("uploadProxyURLOverride") or \
                (cfg.get("status") or {}).get("uploadProxyURL") or ""
            if not url:
                raise UsageError("uploadproxy URL not found")
        return url if "://" in url else f"https://{url}"

    def datasource(self, name: str) -> None:
        """--datasource: the DataSource NAME points at the uploaded volume (created, or its source replaced)."""
        path = f"/apis/cdi.kubevirt.io/v1beta1/namespaces/{self.ns}/datasources"
        source = {"pvc": {"name": name, "namespace": self.ns}}
        labels = instancetype_labels(self.args)
        if self.api.get(f"{path}/{name}") is None:
            self.api.create(path, {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
                                   "metadata": {"name": name, "namespace": self.ns, "labels": labels},
                                   "spec": {"source": source}})
            print(f"DataSource {self.ns}/{name} created")
        else:
            self.api.patch(f"{path}/{name}", {"metadata": {"labels": labels}, "spec": {"source": source}})
            print(f"DataSource {self.ns}/{name} updated")

    def wait_processed(self, name: str) -> None:
        print("Uploading data completed successfully, waiting for processing to complete, you can hit ctrl-c "
              "without interrupting the progress")
        deadline = time.monotonic() + PROCESSING_TIMEOUT
        restarts: str | None = None
        while time.monotonic() < deadline:
            pvc = self.api.get(self._pvc_path(name)) or {}
            ann = pvc.get("metadata", {}).get("annotations") or {}
            if ann.get(ANN_POD_PHASE) == "Succeeded":
                print("Processing completed successfully")
                return
            # processing failed when the upload pod restarted (it waits for a new upload) or the DV failed
            restarts = ann.get(ANN_POD_RESTARTS, "0") if restarts is None else restarts
            dv = self.api.get(self._dv_path(name)) if self.kind == "dv" else None
            if ann.get(ANN_POD_RESTARTS, "0") != restarts or ((dv or {}).get("status") or {}).get("phase") == "Failed":
                why = ann.get(ANN_RUNNING_MESSAGE) or "the upload server restarted"
                raise UsageError(f"processing of the upload failed: {why}")
            time.sleep(0.5)
        raise UsageError("Timed out waiting for post upload processing to complete")


def run(args: argparse.Namespace) -> int:
    for name, default in (("namespace", ""), ("kubeconfig", None), ("context", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        kind, name, content, path, size = validate(args)
        conn = load_connection(args.kubeconfig, args.context)
    except (UsageError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    api = API(conn)
    ns = args.namespace or _context_namespace(args) or "default"
    up = ImageUpload(args, conn, api, ns)
    up.kind = kind
    created = started = False
    try:
        exists = up.check_existing(kind, name, content)
        if not exists:
            assert size is not None
            up.create(kind, name, content, size)
            created = True
        up.wait_ready(kind, name)
        url = up.proxy_url()
        uploader = Uploader(url, lambda refresh: up.token(name), insecure=args.insecure,
                            ca_file=None if args.insecure else _ca_for(url, conn), progress=Progress())
        started = True
        stats = uploader.upload(path, retries=args.retry)
        if stats.resumed_from:
            print(f"Resumed an interrupted upload at byte {stats.resumed_from} ({_human(stats.resumed_from)})")
        print(f"Sent {stats.sent} bytes of {path.stat().st_size}" + (" (holes skipped)" if stats.sparse else ""))
        if args.datasource:
            up.datasource(name)
        up.wait_processed(name)
        return 0
    except (UsageError, APIError, UploadError, httpx.HTTPError, OSError) as exc:
        message = getattr(exc, "message", None) or _describe(exc)
        print(f"error: {message}", file=sys.stderr)
        if created and not started:  # nothing was sent: leave nothing behind
            with contextlib.suppress(APIError):
                api.delete(up._dv_path(name) if kind == "dv" else up._pvc_path(name))
                print(f"{'DataVolume' if kind == 'dv' else 'PVC'} {ns}/{name} deleted", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume the upload", file=sys.stderr)
        return 130
    finally:
        api.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach the API server: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return f"the API server did not answer: {exc or type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc) or type(exc).__name__


def _context_namespace(args: argparse.Namespace) -> str:
    import yaml

    from .apiclient import kubeconfig_path

    try:
        cfg = yaml.safe_load(kubeconfig_path(args.kubeconfig).read_text()) or {}
    except OSError:
        return ""
    name = args.context or cfg.get("current-context")
    ctx = next((c.get("context") or {} for c in cfg.get("contexts") or [] if c.get("name") == name), {})
    return str(ctx.get("namespace") or "")


def _ca_for(url: str, conn: Connection) -> str | None:
    """The kubeconfig's CA verifies the proxy when it is the API server itself (vdisk's default)."""
    from urllib.parse import urlsplit

    return conn.ca_file if urlsplit(url).netloc == urlsplit(conn.server).netloc else None
