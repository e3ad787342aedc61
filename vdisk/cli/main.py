"""The `vdisk` command: `up` (everything on one machine), `apiserver`, `controllers`, `kubeconfig`.

`vdisk up` = the API server, the controllers and (later) a node agent in one process, on asyncio.
Ctrl-C (SIGINT) or SIGTERM stops it cleanly; starting it again keeps every object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from . import kubeconfig

log = logging.getLogger("vdisk")

DEFAULT_DATA_DIR = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "vdisk"


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _lock_data_dir(data_dir: Path) -> int | None:
    """An exclusive lock on DATA_DIR/vdisk.lock for the life of the process (None if held elsewhere)."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "vdisk.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose <= 2:
        for noisy in ("aiohttp.access", "httpx", "httpx2", "httpcore", "httpcore2"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vdisk", description="VM disks on Kubernetes, complete on one machine.")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the API server, the controllers and a node agent on this machine")
    for sp in (up, sub.add_parser("apiserver", help="run only the API server")):
        sp.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state directory (default %(default)s)")
        sp.add_argument("--listen", type=_listen, default=("127.0.0.1", 6443), metavar="HOST:PORT",
                        help="address to serve HTTPS on (default 127.0.0.1:6443; port 0 picks a free one)")
        sp.add_argument("--no-merge-kubeconfig", action="store_true",
                        help="do not add the vdisk context to ~/.kube/config (or $KUBECONFIG)")
        sp.add_argument("--history-retain", type=int, default=10000,
                        help="revisions kept for watch resumption before compaction (default %(default)s)")
        sp.add_argument("--compact-interval", type=float, default=300.0, help="seconds between compactions")
        sp.add_argument("--bookmark-interval", type=float, default=60.0, help="seconds between watch bookmarks")
        sp.add_argument("-v", "--verbose", action="count", default=1)
        sp.add_argument("-q", "--quiet", action="store_true")
    up.add_argument("--node-name", default=None, help="name of this machine's node (default: the host name)")
    up.add_argument("--host-root", type=Path, default=Path("/"),
                    help="where this node's host paths (pool paths, local PV paths) live (default /)")
    up.add_argument("--pod-restart-backoff", type=float, default=10.0, help=argparse.SUPPRESS)

    node = sub.add_parser("node", help="join a node agent for this machine to a running API server")
    node.add_argument("--server", required=True, help="API server URL, e.g. https://127.0.0.1:6443")
    node.add_argument("--token", required=True, help="bearer token for the API server")
    node.add_argument("--name", required=True, help="the node's name")
    node.add_argument("--data-dir", type=Path, default=None, help="node state (default DATA_DIR/nodes/NAME)")
    node.add_argument("--host-root", type=Path, default=Path("/"),
                      help="where this node's host paths (pool paths, local PV paths) live (default /)")
    node.add_argument("--certificate-authority", type=Path, default=None, help="CA of the API server")
    node.add_argument("--insecure-skip-tls-verify", action="store_true")
    node.add_argument("--pod-restart-backoff", type=float, default=10.0, help=argparse.SUPPRESS)
    node.add_argument("-v", "--verbose", action="count", default=1)

    ctl = sub.add_parser("controllers", help="run only the controllers against a cluster (kubeconfig)")
    ctl.add_argument("--kubeconfig", type=Path, default=None)
    ctl.add_argument("-v", "--verbose", action="count", default=1)

    kc = sub.add_parser("kubeconfig", help="print the kubeconfig of a data dir")
    kc.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)

    from . import imageupload

    iu = sub.add_parser("image-upload", help="upload a VM image to a DataVolume or PVC (as `virtctl image-upload`)")
    imageupload.add_arguments(iu)
    return p


async def _run_server(args: argparse.Namespace, with_controllers: bool) -> int:
    from ..apiserver.server import APIServer, ServerConfig

    host, port = args.listen
    config = ServerConfig(data_dir=args.data_dir.expanduser().resolve(), host=host, port=port,
                          history_retain=args.history_retain, compact_interval=args.compact_interval,
                          bookmark_interval=args.bookmark_interval)
    lock = _lock_data_dir(config.data_dir)
    if lock is None:
        print(f"vdisk: another vdisk is running with data dir {config.data_dir}", file=sys.stderr)
        return 1
    server = APIServer(config)
    server.open()
    try:
        await server.start()
    except OSError as exc:
        print(f"vdisk: cannot listen on {host}:{port}: {exc.strerror or exc} (choose another with --listen HOST:PORT)",
              file=sys.stderr)
        server.store.close()
        return 1
    token = server.tokens.token_for("admin")
    kc = kubeconfig.build(server.url, server.pki.ca_cert.read_bytes(), token)
    kc_path = config.data_dir / "kubeconfig"
    kubeconfig.write(kc_path, kc)
    merged_into = None
    if not args.no_merge_kubeconfig:
        merged_into = kubeconfig.user_kubeconfig_path()
        kubeconfig.merge_into(merged_into, kc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    if with_controllers:
        from ..controllers.manager import run_controllers
        from ..node.agent import NodeConfig, default_node_name
        from ..node.run import run_node

        tasks.append(asyncio.create_task(run_controllers(kc_path, stop, upload_proxy_url=server.url)))
        host_root = args.host_root.expanduser().resolve()
        node_dir = config.data_dir / "node" if host_root == Path("/") else host_root / "var" / "lib" / "vdisk"
        node_config = NodeConfig(name=args.node_name or default_node_name(), data_dir=node_dir, host_root=host_root,
                                 roles=("control-plane",), restart_backoff=args.pod_restart_backoff)
        tasks.append(asyncio.create_task(run_node(node_config, stop, kubeconfig=kc_path)))
    print(f"vdisk {'is up' if with_controllers else 'apiserver is serving'}: {server.url}", flush=True)
    print(f"  data dir:    {config.data_dir}", flush=True)
    print(f"  kubeconfig:  {kc_path}" + (f" (context 'vdisk' merged into {merged_into} and made current)"
                                          if merged_into else ""), flush=True)
    print(f"  try:         kubectl{'' if merged_into else f' --kubeconfig {kc_path}'} get namespaces", flush=True)
    virtctl = shutil.which("virtctl") or str(Path(sys.executable).parent / "virtctl")
    print(f"  upload:      {virtctl}{'' if merged_into else f' --kubeconfig {kc_path}'} image-upload dv NAME "
          "--size=10Gi --image-path=FILE", flush=True)
    print("  stop:        Ctrl-C", flush=True)
    try:
        await stop.wait()
    finally:
        stop.set()
        # let the node agent stop its pods and release its devices while the API server still answers
        done, pending = await asyncio.wait(tasks, timeout=30) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await server.stop()
        print("vdisk stopped", flush=True)
    return 0


async def _run_controllers(args: argparse.Namespace) -> int:
    from ..controllers.manager import run_controllers

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    path = args.kubeconfig or kubeconfig.user_kubeconfig_path()
    await run_controllers(path, stop)
    return 0


async def _run_node(args: argparse.Namespace) -> int:
    from ..node.agent import NodeConfig
    from ..node.run import kubeconfig_for, run_node

    data_dir = (args.data_dir or DEFAULT_DATA_DIR / "nodes" / args.name).expanduser().resolve()
    host_root = args.host_root.expanduser().resolve()
    if host_root != Path("/") and not str(data_dir).startswith(str(host_root)):
        print(f"vdisk: --data-dir {data_dir} must be below --host-root {host_root}", file=sys.stderr)
        return 2
    lock = _lock_data_dir(data_dir)
    if lock is None:
        print(f"vdisk: another node agent is running with data dir {data_dir}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = NodeConfig(name=args.name, data_dir=data_dir, host_root=host_root,
                        restart_backoff=args.pod_restart_backoff)
    lk = kubeconfig_for(args.server, args.token, args.certificate_authority, args.insecure_skip_tls_verify)
    print(f"vdisk node {args.name} joining {args.server} (data dir {data_dir}, host root {host_root})", flush=True)
    await run_node(config, stop, lk_config=lk)
    print(f"vdisk node {args.name} stopped", flush=True)
    return 0


def _event_loop_policy() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep working without it
        pass


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("up", "apiserver"):
        _setup_logging(0 if args.quiet else args.verbose)
        _event_loop_policy()
        return asyncio.run(_run_server(args, with_controllers=args.command == "up"))
    if args.command == "node":
        _setup_logging(args.verbose)
        _event_loop_policy()
        return asyncio.run(_run_node(args))
    if args.command == "controllers":
        _setup_logging(args.verbose)
        _event_loop_policy()
        return asyncio.run(_run_controllers(args))
    if args.command == "image-upload":
        from . import imageupload

        return imageupload.run(args)
    if args.command == "kubeconfig":
        path = args.data_dir.expanduser() / "kubeconfig"
        if not path.exists():
            print(f"vdisk: no kubeconfig at {path}; run `vdisk up` first", file=sys.stderr)
            return 1
        sys.stdout.write(path.read_text())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
