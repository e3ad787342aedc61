"""Server-side table cells, checked against k8s pkg/printers/internalversion/printers.go (v1.32)
and apimachinery pkg/util/duration HumanDuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vdisk.apiserver.printers import BUILTIN, access_modes, human_duration, since

Obj = dict[str, Any]

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
MINUTE, HOUR, DAY, YEAR = 60, 3600, 86400, 365 * 86400


def ago(seconds: int) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cells(plural: str, obj: Obj) -> list[Any]:
    return BUILTIN[plural][1](obj, NOW)


def column_names(plural: str) -> list[str]:
    return [c["name"] for c in BUILTIN[plural][0]]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(-2, "<invalid>", id="clock-skew-beyond-tolerance"),
        pytest.param(-1, "0s", id="clock-skew-tolerated"),
        pytest.param(0, "0s", id="zero"),
        pytest.param(119, "119s", id="seconds-below-2m"),
        pytest.param(2 * MINUTE, "2m", id="two-minutes"),
        pytest.param(5 * MINUTE + 30, "5m30s", id="minutes-and-seconds"),
        pytest.param(10 * MINUTE, "10m", id="ten-minutes"),
        pytest.param(10 * MINUTE + 59, "10m", id="seconds-dropped-from-10m"),
        pytest.param(179 * MINUTE, "179m", id="minutes-below-3h"),
        pytest.param(3 * HOUR, "3h", id="three-hours"),
        pytest.param(3 * HOUR + 5 * MINUTE, "3h5m", id="hours-and-minutes"),
        pytest.param(8 * HOUR, "8h", id="eight-hours"),
        pytest.param(47 * HOUR + 59 * MINUTE, "47h", id="hours-below-2d"),
        pytest.param(2 * DAY, "2d", id="two-days"),
        pytest.param(2 * DAY + 3 * HOUR, "2d3h", id="days-and-hours"),
        pytest.param(8 * DAY, "8d", id="eight-days"),
        pytest.param(729 * DAY, "729d", id="days-below-2y"),
        pytest.param(2 * YEAR, "2y", id="two-years"),
        pytest.param(2 * YEAR + 3 * DAY, "2y3d", id="years-and-days"),
        pytest.param(8 * YEAR, "8y", id="eight-years"),
        pytest.param(8 * YEAR + 100 * DAY, "8y", id="days-dropped-from-8y"),
    ],
)
def test_human_duration_follows_apimachinery(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_human_duration_truncates_fractions_toward_zero() -> None:
    assert human_duration(119.9) == "119s"
    assert human_duration(-1.9) == "0s"


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        pytest.param(None, "<unknown>", id="missing"),
        pytest.param("not a time", "<unknown>", id="unparsable"),
        pytest.param(ago(3 * HOUR + 5 * MINUTE), "3h5m", id="rfc3339"),
    ],
)
def test_since_formats_timestamps(timestamp: str | None, text: str) -> None:
    assert since(timestamp, NOW) == text


@pytest.mark.parametrize(
    ("modes", "text"),
    [
        pytest.param(["ReadWriteOncePod", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOnce"], "RWO,ROX,RWX,RWOP",
                     id="fixed-order"),
        pytest.param(["ReadWriteMany", "ReadWriteMany"], "RWX", id="duplicates"),
        pytest.param([], "", id="empty"),
        pytest.param(None, "", id="missing"),
    ],
)
def test_access_modes_print_short_names_in_upstream_order(modes: list[str] | None, text: str) -> None:
    assert access_modes(modes) == text


# --- PersistentVolumeClaim ----------------------------------------------------------------------------------

def test_pvc_columns_are_upstream_columns() -> None:
    assert column_names("persistentvolumeclaims") == ["Name", "Status", "Volume", "Capacity", "Access Modes",
                                                      "StorageClass", "VolumeAttributesClass", "Age", "VolumeMode"]


def test_bound_pvc_shows_status_capacity_and_modes() -> None:
    pvc = {
        "metadata": {"name": "disk", "creationTimestamp": ago(5 * MINUTE + 30)},
        "spec": {"volumeName": "pv-1", "storageClassName": "local", "volumeMode": "Block",
                 "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "1024Mi"},
                   "accessModes": ["ReadWriteMany", "ReadWriteOnce"]},
    }
    assert cells("persistentvolumeclaims", pvc) == ["disk", "Bound", "pv-1", "1Gi", "RWO,RWX", "local", "<unset>",
                                                    "5m30s", "Block"]


def test_unbound_pvc_has_empty_capacity_and_access_modes() -> None:
    pvc = {
        "metadata": {"name": "disk", "creationTimestamp": ago(10)},
        "spec": {"storageClassName": "local", "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]},
    }
    assert cells("persistentvolumeclaims", pvc) == ["disk", "Pending", "", "", "", "local", "<unset>", "10s",
                                                    "<unset>"]


def test_deleting_pvc_is_terminating_and_beta_class_annotation_wins() -> None:
    pvc = {
        "metadata": {"name": "disk", "creationTimestamp": ago(10), "deletionTimestamp": ago(1),
                     "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
        "spec": {"storageClassName": "new", "volumeName": "pv-1", "volumeAttributesClassName": "gold"},
        "status": {"phase": "Bound"},
    }
    row = cells("persistentvolumeclaims", pvc)
    assert row[1] == "Terminating"
    assert row[3] == "0"  # bound but no status capacity: an empty Quantity prints as "0"
    assert row[5] == "old"
    assert row[6] == "gold"


# --- PersistentVolume ---------------------------------------------------------------------------------------

def test_pv_row_shows_claim_capacity_and_modes() -> None:
    pv = {
        "metadata": {"name": "pv-1", "creationTimestamp": ago(3 * HOUR)},
        "spec": {"capacity": {"storage": "10Gi"},
                 "accessModes": ["ReadWriteOncePod", "ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local",
                 "claimRef": {"namespace": "ns1", "name": "disk"}, "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"},
    }
    assert column_names("persistentvolumes") == ["Name", "Capacity", "Access Modes", "Reclaim Policy", "Status",
                                                 "Claim", "StorageClass", "VolumeAttributesClass", "Reason", "Age",
                                                 "VolumeMode"]
    assert cells("persistentvolumes", pv) == ["pv-1", "10Gi", "RWO,RWOP", "Delete", "Bound", "ns1/disk", "local",
                                              "<unset>", "", "3h", "Filesystem"]


def test_unclaimed_pv_has_empty_claim_and_zero_capacity_when_unset() -> None:
    pv = {"metadata": {"name": "pv-2", "creationTimestamp": ago(0), "deletionTimestamp": ago(0)},
          "spec": {}, "status": {"phase": "Released", "reason": "Why"}}
    assert cells("persistentvolumes", pv) == ["pv-2", "0", "", "", "Terminating", "", "", "<unset>", "Why", "0s",
                                              "<unset>"]


# --- StorageClass -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("annotations", "name"),
    [
        pytest.param({"storageclass.kubernetes.io/is-default-class": "true"}, "local (default)", id="ga-annotation"),
        pytest.param({"storageclass.beta.kubernetes.io/is-default-class": "true"}, "local (default)",
                     id="beta-annotation"),
        pytest.param({"storageclass.kubernetes.io/is-default-class": "false"}, "local", id="annotation-false"),
        pytest.param({"storageclass.kubernetes.io/is-default-class": "True"}, "local", id="annotation-not-lowercase"),
        pytest.param({}, "local", id="no-annotation"),
    ],
)
def test_default_storage_class_name_gets_default_suffix(annotations: dict[str, str], name: str) -> None:
    sc = {"metadata": {"name": "local", "annotations": annotations, "creationTimestamp": ago(2 * DAY)},
          "provisioner": "vdisk.io/local"}
    assert cells("storageclasses", sc) == [name, "vdisk.io/local", "Delete", "Immediate", False, "2d"]


def test_storage_class_row_shows_set_policies() -> None:
    sc = {"metadata": {"name": "wffc", "creationTimestamp": ago(8 * DAY)}, "provisioner": "p",
          "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": True}
    assert cells("storageclasses", sc) == ["wffc", "p", "Retain", "WaitForFirstConsumer", True, "8d"]


# --- Event --------------------------------------------------------------------------------------------------

def test_event_columns_are_upstream_wide_columns() -> None:
    assert column_names("events") == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message",
                                      "First Seen", "Count", "Name"]


def test_event_row_names_object_as_lowercase_kind_and_name() -> None:
    event = {
        "metadata": {"name": "disk.17f", "namespace": "ns1"},
        "involvedObject": {"kind": "PersistentVolumeClaim", "name": "disk", "fieldPath": "spec"},
        "reason": "Provisioning", "type": "Normal", "message": "  External provisioner is provisioning\n",
        "source": {"component": "vdisk-provisioner", "host": "node1"},
        "firstTimestamp": ago(10 * MINUTE), "lastTimestamp": ago(2 * MINUTE), "count": 3,
    }
    assert cells("events", event) == ["2m", "Normal", "Provisioning", "persistentvolumeclaim/disk", "spec",
                                      "vdisk-provisioner, node1", "External provisioner is provisioning", "10m", 3,
                                      "disk.17f"]


def test_event_without_name_or_count_or_last_timestamp() -> None:
    event = {
        "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Node"},
        "type": "Warning", "reason": "R",
        "eventTime": "2025-06-01T11:59:00.123456Z",  # 59.876544s ago: truncated, as Go's int(d.Seconds())
        "reportingComponent": "ctrl", "reportingInstance": "",
    }
    assert cells("events", event) == ["59s", "Warning", "R", "node", "", "ctrl", "", "59s", 1, "e1"]


def test_event_series_gives_last_seen_and_count() -> None:
    event = {
        "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Pod", "name": "p"},
        "eventTime": ago(HOUR), "series": {"count": 7, "lastObservedTime": ago(30)},
        "count": 2, "reportingComponent": "c", "reportingInstance": "i",
    }
    row = cells("events", event)
    assert row[0] == "30s"
    assert row[5] == "c, i"
    assert row[7] == "60m"
    assert row[8] == 7
