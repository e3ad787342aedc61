"""The API server: wiring of store, registry, verbs, watch, garbage collection, TLS and auth.

`APIServer(config)` opens the store, serves built-in kinds and every stored CRD, installs vdisk's own
CRDs and first-start objects, and runs an aiohttp HTTPS server. Background work (garbage collection,
compaction, watch bookmarks, event expiry) lives in tasks that start and stop with the server.
"""

from __future__ import annotations

import asyncio
import gc as pygc
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from .. import __version__
from . import admission, errors, uploadproxy
from .auth import ANONYMOUS_PATHS, Attributes, Authorizer, TokenFile, User
from .builtin import builtin_types
from .gc import GarbageCollector
from .handlers import dispatch, json_response
from .metadata import generate_name
from .openapi import OpenAPICache
from .pki import PKI
from .registry import Registry, ResourceType, Version
from .requestinfo import RequestInfo
from .service import Objects, WriteOptions
from .store import Store
from .uploadtoken import TokenSigner
from .watch import WatchHub

log = logging.getLogger(__name__)

Obj = dict[str, Any]
CRD_DIR = Path(__file__).resolve().parent.parent / "manifests" / "crds"
# The kubectl dispatcher picks kubectl.1.<minor> from this; 32 maps to the shipped kubectl 1.32.
KUBE_MINOR = "32"

CreateHook = Callable[[web.Request, ResourceType, Version, str, Any], Awaitable[web.StreamResponse]]
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443
    tls: bool = True
    history_retain: int = 10000  # revisions a watch can resume from
    compact_interval: float = 300.0
    bookmark_interval: float = 60.0
    event_ttl: float = 3600.0
    install_crds: bool = True


@dataclass
class APIServer:
    config: ServerConfig
    store: Store = field(init=False)
    registry: Registry = field(init=False)
    objects: Objects = field(init=False)
    hub: WatchHub = field(init=False)
    gc: GarbageCollector = field(init=False)
    tokens: TokenFile = field(init=False)
    pki: PKI = field(init=False)
    openapi: OpenAPICache = field(init=False)
    authorizer: Authorizer = field(default_factory=Authorizer)
    create_hooks: dict[tuple[str, str], CreateHook] = field(default_factory=dict)
    extra_routes: list[tuple[str, RouteHandler]] = field(default_factory=list)
    address: str = ""
    _runner: web.AppRunner | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    # --- setup --------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Open the store and make every kind servable; idempotent across restarts."""
        d = self.config.data_dir
        d.mkdir(parents=True, exist_ok=True)
        admission.load_all()
        self.store = Store(str(d / "vdisk.db"), self.config.history_retain)
        self.store.open()
        self.registry = Registry()
        for rt in builtin_types():
            self.registry.add(rt)
        self.objects = Objects(self.store, self.registry)
        for crd in self.store.list(("apiextensions.k8s.io", "customresourcedefinitions")):
            self.objects.sync_crd(crd)
        self.hub = WatchHub(self.store)
        self.openapi = OpenAPICache(self.registry)
        self.pki = PKI(d / "pki")
        self.upload_tokens = TokenSigner(d / "pki" / "upload-token.key")
        self.tokens = TokenFile.load_or_create(d / "pki" / "tokens.csv")
        self.create_hooks[("authorization.k8s.io", "selfsubjectaccessreviews")] = self._self_subject_access_review
        self.create_hooks[("upload.cdi.kubevirt.io", "uploadtokenrequests")] = self._upload_token_request
        if self.config.install_crds:
            self.install_crds()
        self.bootstrap()
        self.gc = GarbageCollector(self.objects)
        # Everything loaded so far lives as long as the server: keep it out of the cyclic collector's
        # generations, so full collections stay short as the store grows (CPython gc.freeze docs).
        pygc.collect()
        pygc.freeze()

    def install_crds(self) -> None:
        rt = self.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
        assert rt is not None
        version = rt.versions[0]
        opts = WriteOptions(field_validation="Ignore", user="system:vdisk")
        for path in sorted(CRD_DIR.glob("*.yaml")):
            crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            name = crd["metadata"]["name"]
            existing = self.store.get(rt.storage_id, "", name)
            if existing is None:
                self.objects.create(rt, version, "", crd, opts)
            elif existing.get("spec") != crd.get("spec"):
                new = dict(existing)
                new["spec"] = crd["spec"]
                self.objects.update(rt, version, "", name, new, opts)

    def bootstrap(self) -> None:
        """First-start objects (created once; a user's later changes are kept)."""
        opts = WriteOptions(field_validation="Ignore", user="system:vdisk")
        self._ensure("storage.k8s.io", "storageclasses", "", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "kubevirt.io.hostpath-provisioner", "parameters": {"storagePool": "local"},
            "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate", "allowVolumeExpansion": True}, opts)
        self._ensure("storage.k8s.io", "storageclasses", "", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local-block"},
            "provisioner": "vdisk.io/local-block", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": True}, opts)
        self._ensure("storage.k8s.io", "csidrivers", "", {
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
            "metadata": {"name": "kubevirt.io.hostpath-provisioner"},
            "spec": {"attachRequired": False, "podInfoOnMount": True, "storageCapacity": True,
                     "fsGroupPolicy": "File", "requiresRepublish": False,
                     "volumeLifecycleModes": ["Persistent", "Ephemeral"]}}, opts)
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease", "openshift-cnv"):
            self._ensure("", "namespaces", "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                         opts)
        self._ensure("hco.kubevirt.io", "hyperconvergeds", "openshift-cnv", {
            "apiVersion": "hco.kubevirt.io/v1beta1", "kind": "HyperConverged",
            "metadata": {"name": "kubevirt-hyperconverged", "namespace": "openshift-cnv"}, "spec": {}}, opts)
        self._ensure("cdi.kubevirt.io", "cdiconfigs", "", {
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDIConfig", "metadata": {"name": "config"},
            "spec": {}}, opts)

    def _ensure(self, group: str, plural: str, ns: str, obj: Obj, opts: WriteOptions) -> None:
        rt = self.registry.get(group, plural)
        if rt is None:
            return
        if self.store.get(rt.storage_id, ns, obj["metadata"]["name"]) is None:
            version = rt.version(rt.storage_version) or rt.versions[0]
            self.objects.create(rt, version, ns, obj, opts)

    # --- request-time helpers -----------------------------------------------------------------------------

    def version_info(self) -> Obj:
        return {"major": "1", "minor": KUBE_MINOR, "gitVersion": f"v1.{KUBE_MINOR}.0-vdisk.{__version__}",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-11-26T00:00:00Z",
                "goVersion": "python", "compiler": "cpython", "platform": "linux/amd64"}

    def authorize(self, user: User, verb: str, rt: ResourceType, info: RequestInfo) -> None:
        ok, reason = self.authorizer.authorize(Attributes(user, verb, rt.group, rt.plural, info.subresource,
                                                          info.namespace or "", info.name))
        if not ok:
            raise errors.forbidden(rt.group, rt.plural, info.name, f'User "{user.name}" cannot {verb} resource '
                                   f'"{rt.plural}" in API group "{rt.group}"' +
                                   (f' in the namespace "{info.namespace}"' if info.namespace else
                                    " at the cluster scope") + (f": {reason}" if reason else ""))

    async def pod_log(self, request: web.Request, rt: ResourceType, ns: str, name: str) -> web.StreamResponse:
        from .podlogs import proxy_pod_log

        pod = self.objects.read(rt, ns, name)
        return await proxy_pod_log(self, request, pod)

    async def _self_subject_access_review(self, request: web.Request, rt: ResourceType, version: Version, ns: str,
                                          body: Any) -> web.StreamResponse:
        user: User = request["vdisk.user"]
        attrs = (body or {}).get("spec", {}).get("resourceAttributes") or {}
        ok, reason = self.authorizer.authorize(Attributes(user, attrs.get("verb", ""), attrs.get("group", ""),
                                                          attrs.get("resource", ""), attrs.get("subresource", ""),
                                                          attrs.get("namespace", ""), attrs.get("name", "")))
        out = dict(body or {})
        out["apiVersion"] = rt.api_version(version.name)
        out["kind"] = rt.kind
        out.setdefault("metadata", {})
        out["status"] = {"allowed": ok, **({"reason": reason} if reason else {})}
        return json_response(out, 201)

    async def _upload_token_request(self, request: web.Request, rt: ResourceType, version: Version, ns: str,
                                    body: Any) -> web.StreamResponse:
        """CDI's aggregated API: nothing is stored; the answer carries a token for spec.pvcName."""
        pvc = ((body or {}).get("spec") or {}).get("pvcName")
        if not pvc or not isinstance(pvc, str):
            raise errors.invalid(rt.kind, rt.group, ((body or {}).get("metadata") or {}).get("name", ""),
                                 [errors.required("spec.pvcName")])
        out = dict(body)
        out["apiVersion"] = rt.api_version(version.name)
        out["kind"] = rt.kind
        meta = dict(out.get("metadata") or {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(meta["generateName"])
        meta["namespace"] = ns
        meta["creationTimestamp"] = None
        out["metadata"] = meta
        out["status"] = {"token": self.upload_tokens.issue(ns, pvc)}
        return json_response(out, 201)

    # --- HTTP ---------------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=1024 ** 4)
        app["vdisk.apiserver"] = self
        app.router.add_route("*", "/{tail:.*}", dispatch)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
        t0 = time.monotonic()
        if uploadproxy.is_upload_path(request.path):  # authenticated by its upload token
            return await uploadproxy.handle(self, request)
        try:
            if request.path not in ANONYMOUS_PATHS and not request.path.startswith(("/healthz", "/livez", "/readyz")):
                user = self.tokens.authenticate(request.headers.get("Authorization"))
                if user is None:
                    raise errors.unauthorized()
                request["vdisk.user"] = user
            resp = await handler(request)
        except errors.APIError as exc:
            resp = json_response(exc.status(), exc.code)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("request failed method=%s path=%s", request.method, request.path)
            err = errors.internal(f"{type(exc).__name__}: {exc}")
            resp = json_response(err.status(), 500)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request method=%s path=%s status=%s ms=%.1f", request.method, request.path_qs,
                      getattr(resp, "status", "?"), (time.monotonic() - t0) * 1000)
        return resp

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    async def start(self) -> None:
        if self.config.tls:
            self.pki.ensure([self.config.host])
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, ssl_context=self.ssl_context(),
                           reuse_address=True, backlog=1024)
        await site.start()
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.config.port = sockets[0].getsockname()[1]
        self.address = f"{self.config.host}:{self.config.port}"
        for coro in (self.gc.run(), self._compact_loop(), self._bookmark_loop(), self._checkpoint_loop()):
            self._tasks.append(asyncio.create_task(coro))
        log.info("apiserver serving address=%s tls=%s revision=%d", self.address, self.config.tls,
                 self.store.revision)

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"{scheme}://{host}:{self.config.port}"

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()

    # --- background ---------------------------------------------------------------------------------------

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.compact_interval)
            try:
                self.expire_events()
                self.store.compact()
            except Exception:
                log.exception("compaction failed")

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(self.store.checkpoint)
            except Exception:
                log.exception("checkpoint failed")

    async def _bookmark_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.bookmark_interval)
            self.hub.bookmark_all()

    def expire_events(self) -> None:
        """Delete Events older than the TTL (kube-apiserver --event-ttl, 1h by default)."""
        rt = self.registry.get("", "events")
        if rt is None:
            return
        cutoff = datetime.now(UTC) - timedelta(seconds=self.config.event_ttl)
        version = rt.versions[0]
        for ev in self.store.list(rt.storage_id):
            ts = ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
            try:
                t = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
            except ValueError:
                continue
            if t < cutoff:
                try:
                    self.objects.delete(rt, version, ev["metadata"]["namespace"], ev["metadata"]["name"], None)
                except errors.APIError:
                    pass
