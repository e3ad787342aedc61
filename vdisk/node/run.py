"""Running a node agent: from a kubeconfig (`vdisk up`) or a server URL and token (`vdisk node`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from lightkube import KubeConfig

from ..controllers.client import Client
from .agent import NodeAgent, NodeConfig
from .pods import PodRunner

log = logging.getLogger(__name__)


def kubeconfig_for(server: str, token: str, ca: Path | None, insecure: bool) -> KubeConfig:
    cluster: dict[str, object] = {"server": server}
    if ca is not None:
        cluster["certificate-authority"] = str(ca)
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    return KubeConfig.from_dict({
        "apiVersion": "v1", "kind": "Config", "current-context": "node",
        "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "node", "context": {"cluster": "c", "user": "u"}}]})


async def run_node(config: NodeConfig, stop: asyncio.Event, *, kubeconfig: Path | None = None,
                   lk_config: KubeConfig | None = None) -> None:
    client = Client(kubeconfig, config=lk_config, field_manager=f"vdisk-node-{config.name}")
    agent = NodeAgent(client, config)
    runner = PodRunner(agent)
    agent.pod_runner = runner  # type: ignore[attr-defined]
    agent.extra_tasks.append(runner.run)
    try:
        await agent.run(stop)
    finally:
        with contextlib.suppress(Exception):
            await client.close()
