"""Upload server pods for PVCs marked as upload targets (R18-R20, R22).

Upstream: CDI pkg/controller/upload-controller.go: a PVC with `cdi.kubevirt.io/storage.upload.target`
gets pod `cdi-upload-<pvc>` (with a scratch PVC, always: the format is known only when bytes arrive)
once it is bound; `storage.pod.ready` says when the proxy may send. CDI's per-pod Service and mTLS
certificate become, here, an endpoint the pod publishes and a random key only the proxy presents.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from .. import cdi
from ..storage import meta
from .dvrender import overhead_for
from .importpod import ImportPodController, _ann, _request

Obj = dict[str, Any]

UPLOADSERVER_IMAGE = os.environ.get("VDISK_UPLOADSERVER_IMAGE", "quay.io/vdisk/vdisk-uploadserver:latest")


class UploadPodController(ImportPodController):
    NAME = "upload"
    SELECT = cdi.ANN_UPLOAD_TARGET
    COMPONENT = cdi.UPLOAD_LABEL
    POD_ANNOTATION = cdi.ANN_UPLOAD_POD

    def pod_name(self, pvc_name: str) -> str:
        return cdi.upload_pod_name(pvc_name)

    def always_scratch(self, pvc: Obj) -> bool:
        return True

    def pod_ready(self, pod: Obj) -> bool:
        """Ready when its server listens: the container runs and the endpoint is published."""
        if not super().pod_ready(pod):
            return False
        return '"endpoint"' in ((meta(pod).get("annotations") or {}).get(cdi.ANN_PROGRESS) or "")

    def _pod(self, pvc: Obj, pod_name: str, scratch: bool) -> Obj:
        pod = super()._pod(pvc, pod_name, scratch=True)
        spec = pvc.get("spec") or {}
        ann = _ann(pvc)
        overhead = overhead_for(self._config(), spec.get("storageClassName") or "",
                                spec.get("volumeMode") or "Filesystem")
        container = pod["spec"]["containers"][0]
        container["name"] = "cdi-upload-server"
        container["image"] = UPLOADSERVER_IMAGE
        container["env"] = [
            {"name": "UPLOAD_KEY", "value": secrets.token_hex(24)},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "UPLOAD_IMAGE_SIZE", "value": _request(pvc)},
            {"name": "FILESYSTEM_OVERHEAD", "value": f"{overhead:g}"},
            {"name": "PREALLOCATION", "value": ann.get(cdi.ANN_PREALLOCATION_REQUESTED, "false")},
            {"name": "UPLOAD_CONTENT_TYPE", "value": ann.get(cdi.ANN_CONTENT_TYPE, cdi.CONTENT_KUBEVIRT)},
        ]
        pod["metadata"]["labels"][cdi.LABEL_COMPONENT] = cdi.UPLOAD_LABEL
        pod["metadata"]["labels"]["service"] = pod_name
        return pod
