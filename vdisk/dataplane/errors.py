"""Data-plane errors: each keeps its data as attributes and renders a user-facing message.

    DataplaneError                      (retryable unless `fatal`)
     ├── SourceError                    cannot reach or read the source (HTTP status, TLS, timeout)
     │    └── AuthError                 401/403 from the source
     ├── FormatError                    unknown, truncated or corrupt image / archive / compression
     ├── UnsafeImage (fatal)            backing file, external data file, host path
     ├── TooSmall                       virtual size larger than the target
     ├── ChecksumMismatch (fatal)
     ├── ScratchRequired                streaming is unsafe; retry with a scratch volume
     └── ToolError                      qemu-img / nbdkit failed

Messages follow CDI's where one exists (pkg/importer, pkg/image), so the DataVolume's Running
condition reads as users know it.
"""

from __future__ import annotations


class DataplaneError(Exception):
    fatal = False
    reason = "Error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SourceError(DataplaneError):
    pass


class AuthError(SourceError):
    pass


class FormatError(DataplaneError):
    pass


class UnsafeImage(DataplaneError):
    fatal = True
    reason = "UnsafeImage"

    def __init__(self, what: str, detail: str = ""):
        super().__init__(f"refusing image: {what}" + (f" ({detail})" if detail else ""))
        self.what = what


class TooSmall(DataplaneError):
    """CDI: "virtual image size %d is larger than the reported available storage %d. A larger PVC is required"."""

    def __init__(self, virtual_size: int | None, available: int):
        size = f"virtual image size {virtual_size}" if virtual_size is not None else "the image"
        super().__init__(f"{size} is larger than the reported available storage {available}. "
                         "A larger PVC is required")
        self.virtual_size = virtual_size
        self.available = available


class ChecksumMismatch(DataplaneError):
    fatal = True
    reason = "ChecksumError"

    def __init__(self, algorithm: str, expected: str, actual: str):
        super().__init__(f"Unable to process data: checksum mismatch: expected {algorithm}:{expected}, "
                         f"got {algorithm}:{actual}")


class UnsupportedSource(DataplaneError):
    """A source this importer cannot read at all (e.g. an oci-archive:// registry URL): retrying cannot help."""

    fatal = True
    reason = "ErrImportFailed"


class InvalidChecksum(DataplaneError):
    """A checksum that cannot be checked: retrying cannot help."""

    fatal = True
    reason = "ChecksumError"


class ScratchRequired(DataplaneError):
    reason = "ScratchSpaceRequired"

    def __init__(self, why: str):
        super().__init__(f"scratch space required: {why}")
        self.why = why


class ToolError(DataplaneError):
    def __init__(self, tool: str, code: int, stderr: str):
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {code}"
        super().__init__(f"{tool} failed: {detail}")
        self.tool = tool
        self.code = code
        self.stderr = stderr
