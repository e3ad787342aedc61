"""CDIConfig status.filesystemOverhead as CDI's config controller computes it."""

from __future__ import annotations

import pytest

from vdisk.controllers.cdiconfig import filesystem_overhead
from vdisk.controllers.runtime import Terminal

CLASSES = [{"metadata": {"name": "local"}}, {"metadata": {"name": "fast"}}]


def test_an_invalid_global_falls_back_to_the_default() -> None:
    fo = filesystem_overhead({"filesystemOverhead": {"global": "abc", "storageClass": {"fast": "0.1"}}}, CLASSES)
    assert fo == {"global": "0.055", "storageClass": {"local": "0.055", "fast": "0.1"}}


def test_an_invalid_value_for_an_existing_class_fails_only_that_way() -> None:
    with pytest.raises(Terminal, match="for storage class fast"):
        filesystem_overhead({"filesystemOverhead": {"storageClass": {"fast": "2"}}}, CLASSES)
    fo = filesystem_overhead({"filesystemOverhead": {"global": "0.1", "storageClass": {"gone": "-1"}}}, CLASSES)
    assert fo == {"global": "0.1", "storageClass": {"local": "0.1", "fast": "0.1"}}
