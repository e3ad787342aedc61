"""CDI's names and formulas, shared by the DataVolume and worker-pod controllers (no API calls here).

Annotation names are CDI's (pkg/controller/common/util.go), so scripts and habits keep working.
Sizes follow pkg/util/util.go after PR #3779: GetRequiredSpace and GetUsableSpace with 1 MiB alignment.
"""

from __future__ import annotations

import hashlib
import math

MIB = 1024 * 1024

PREFIX = "cdi.kubevirt.io/"
# the DataVolume -> PVC hand-over
ANN_CREATED_FOR_DV = PREFIX + "createdForDataVolume"
ANN_POPULATED_FOR = PREFIX + "storage.populatedFor"
ANN_CONTENT_TYPE = PREFIX + "storage.contentType"
ANN_PREALLOCATION_REQUESTED = PREFIX + "storage.preallocation.requested"
ANN_PREALLOCATION_APPLIED = PREFIX + "storage.preallocation"
ANN_IMMEDIATE_BINDING = PREFIX + "storage.bind.immediate.requested"
ANN_PRIORITY_CLASS = PREFIX + "storage.pod.priorityclassname"
ANN_SERVICE_ACCOUNT = PREFIX + "storage.pod.serviceAccountName"
ANN_RETAIN_POD = PREFIX + "storage.pod.retainAfterCompletion"
# import source
ANN_SOURCE = PREFIX + "storage.import.source"
ANN_ENDPOINT = PREFIX + "storage.import.endpoint"
ANN_SECRET = PREFIX + "storage.import.secretName"
ANN_CERT_CONFIGMAP = PREFIX + "storage.import.certConfigMap"
ANN_EXTRA_HEADERS = PREFIX + "storage.import.extraHeaders"
ANN_SECRET_EXTRA_HEADERS = PREFIX + "storage.import.secretExtraHeaders"
ANN_CHECKSUM = PREFIX + "storage.import.checksum"
ANN_INSECURE = PREFIX + "storage.import.insecureSkipVerify"
ANN_REGISTRY_METHOD = PREFIX + "storage.import.registryImportMethod"
ANN_IMPORT_POD = PREFIX + "storage.import.importPodName"
ANN_REQUIRES_SCRATCH = PREFIX + "storage.import.requiresScratch"
ANN_FATAL_ERROR = PREFIX + "storage.import.fatalError"
# the worker pod's state, mirrored on the PVC
ANN_POD_PHASE = PREFIX + "storage.pod.phase"
ANN_POD_READY = PREFIX + "storage.pod.ready"
ANN_POD_RESTARTS = PREFIX + "storage.pod.restarts"
ANN_POD_SCHEDULABLE = PREFIX + "storage.pod.schedulable"
ANN_RUNNING = PREFIX + "storage.condition.running"
ANN_RUNNING_MESSAGE = PREFIX + "storage.condition.running.message"
ANN_RUNNING_REASON = PREFIX + "storage.condition.running.reason"
ANN_BOUND = PREFIX + "storage.condition.bound"
ANN_BOUND_MESSAGE = PREFIX + "storage.condition.bound.message"
ANN_BOUND_REASON = PREFIX + "storage.condition.bound.reason"

SOURCE_HTTP, SOURCE_REGISTRY, SOURCE_NONE = "http", "registry", "none"
CONTENT_KUBEVIRT, CONTENT_ARCHIVE = "kubevirt", "archive"

LABEL_APP = "app"
APP = "containerized-data-importer"
LABEL_COMPONENT = "cdi.kubevirt.io"
IMPORTER_LABEL = "importer"
LABEL_APPLY_PROFILE = PREFIX + "applyStorageProfile"  # CDI renders such PVCs from the StorageProfile
UPLOAD_KEY_HEADER = "X-Vdisk-Upload-Key"  # the upload proxy's proof to an upload server
ANN_PROGRESS = "vdisk.io/progress"  # a worker's progress record, published on its pod by the node agent

DEFAULT_OVERHEAD = 0.055
TOO_SMALL = "DataVolume too small to contain image"
_TOO_SMALL_HINTS = ("is larger than the reported available", "no space left on device", "disk quota exceeded",
                    "file largest block is bigger than maxblock")


def round_up(n: int, align: int = MIB) -> int:
    return -(-n // align) * align


def required_space(overhead: float, requested: int) -> int:
    """GetRequiredSpace: the PVC request that leaves `requested` bytes for the image."""
    return math.ceil(round_up(requested) * (1 + overhead))


def usable_space(overhead: float, available: int) -> int:
    """GetUsableSpace: the image size a volume of `available` bytes holds with the overhead reserved."""
    return (math.ceil(available / (1 + overhead)) // MIB) * MIB


LABEL_MAX = 63

CHECKSUM_HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}


def parse_checksum(value: str) -> tuple[str, str]:
    """CDI's http source checksum `<algorithm>:<hex digest>` -> (algorithm, digest), both lower case;
    ValueError "Invalid checksum format: ..." as CDI's webhook says it."""
    algo, sep, digest = value.strip().lower().partition(":")
    want = CHECKSUM_HEX_LENGTHS.get(algo)
    if not sep or want is None:
        raise ValueError(f"Invalid checksum format: {value!r}: expected <algorithm>:<hex digest> with algorithm "
                         f"one of {', '.join(CHECKSUM_HEX_LENGTHS)}")
    if len(digest) != want or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"Invalid checksum format: {value!r}: a {algo} digest is {want} hexadecimal characters")
    return algo, digest


def simplify_message(message: str) -> str:
    """CDI simplifyKnownMessage: capacity failures read the same whatever layer noticed them."""
    low = message.lower()
    return TOO_SMALL if any(h in low for h in _TOO_SMALL_HINTS) else message


def resource_name(base: str, suffix: str) -> str:
    """CDI naming.GetResourceName: `base-suffix`, cut to a 63-character label with a hash of the whole
    name kept at the end, so long claim names still give valid, distinct pod and label values."""
    full = f"{base}-{suffix}"
    if len(full) <= LABEL_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[:LABEL_MAX - len(digest) - 1].rstrip('-.')}-{digest}"


def importer_pod_name(pvc_name: str) -> str:
    return resource_name("importer", pvc_name)


def scratch_name(pvc_name: str) -> str:
    return resource_name(pvc_name, "scratch")

# upload
ANN_UPLOAD_TARGET = PREFIX + "storage.upload.target"
ANN_UPLOAD_POD = PREFIX + "storage.uploadPodName"
UPLOAD_LABEL = "cdi-upload-server"


def upload_pod_name(pvc_name: str) -> str:
    return resource_name("cdi-upload", pvc_name)
