"""Pure helpers for pods on a node: container state records and the pod status computed from them.

Upstream: kubelet pkg/kubelet/kubelet_pods.go (getPhase, generateAPIPodStatus) and
pkg/kubelet/status (conditions Initialized, ContainersReady, Ready, PodReadyToStartContainers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass
class ContainerRecord:
    name: str
    image: str
    init: bool = False
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    container_id: str = ""

    def status(self) -> Obj:
        out: Obj = {"name": self.name, "image": self.image, "imageID": "", "ready": self.ready,
                    "restartCount": self.restart_count, "started": self.started, "state": self.state,
                    "lastState": self.last_state}
        if self.container_id:
            out["containerID"] = self.container_id
        return out

    @property
    def terminated(self) -> Obj | None:
        return self.state.get("terminated")

    @property
    def running(self) -> bool:
        return "running" in self.state


def pod_phase(restart_policy: str, init: list[ContainerRecord], main: list[ContainerRecord]) -> str:
    for c in init:
        t = c.terminated
        if t is None:
            return "Pending"
        if t.get("exitCode", 0) != 0:
            return "Failed" if restart_policy == "Never" else "Pending"
    # kubelet getPhase: a container waiting to restart after a run counts as stopped, not waiting
    running = stopped = succeeded = waiting = 0
    for c in main:
        if c.running:
            running += 1
        elif c.terminated is not None:
            stopped += 1
            succeeded += c.terminated.get("exitCode", 0) == 0
        elif (c.last_state or {}).get("terminated") is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped == len(main) and main:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if restart_policy == "Never" else "Running"
    return "Pending"


def conditions(now: str, old: list[Obj], volumes_ready: bool, init: list[ContainerRecord],
               main: list[ContainerRecord], phase: str) -> list[Obj]:
    initialized = all((c.terminated or {}).get("exitCode", 1) == 0 for c in init)
    ready = bool(main) and all(c.ready for c in main) and phase == "Running"
    wanted = [
        ("PodReadyToStartContainers", volumes_ready, ""),
        ("Initialized", initialized, "" if initialized else "ContainersNotInitialized"),
        ("Ready", ready, "" if ready else ("PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady")),
        ("ContainersReady", ready, "" if ready else ("PodCompleted" if phase in ("Succeeded", "Failed")
                                                     else "ContainersNotReady")),
        ("PodScheduled", True, ""),
    ]
    prev = {c.get("type"): c for c in old}
    out = []
    for typ, ok, reason in wanted:
        status = "True" if ok else "False"
        cond: Obj = {"type": typ, "status": status, "lastProbeTime": None}
        p = prev.get(typ)
        cond["lastTransitionTime"] = p.get("lastTransitionTime") if p and p.get("status") == status else now
        if reason:
            cond["reason"] = reason
            if reason == "ContainersNotReady":
                names = [c.name for c in main if not c.ready]
                cond["message"] = f"containers with unready status: [{' '.join(names)}]"
            elif reason == "ContainersNotInitialized":
                names = [c.name for c in init if (c.terminated or {}).get("exitCode", 1) != 0]
                cond["message"] = f"containers with incomplete status: [{' '.join(names)}]"
        out.append(cond)
    return out
