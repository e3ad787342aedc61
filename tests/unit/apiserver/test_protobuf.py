"""Protobuf request bodies (runtime.Unknown after the `k8s\\0` magic), encoded by hand as kubectl would send them.

Field numbers are from upstream generated.proto (k8s.io/api core/v1, apimachinery meta/v1 and runtime).
"""

from __future__ import annotations

import base64

import pytest

from vdisk.apiserver.errors import APIError
from vdisk.apiserver.protobuf import MAGIC, decode


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vint(num: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return varint(num << 3) + varint(value)


def ld(num: int, payload: bytes | str) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes, messages, map entries."""
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(num << 3 | 2) + varint(len(data)) + data


def map_entry(num: int, key: str, value: bytes | str) -> bytes:
    return ld(num, ld(1, key) + ld(2, value))


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = ld(1, api_version) + ld(2, kind)
    return MAGIC + ld(1, type_meta) + ld(2, raw) + ld(3, "") + ld(4, "")


def object_meta(name: str, namespace: str = "", labels: dict[str, str] | None = None) -> bytes:
    # Go's ObjectMeta.Marshal always writes creationTimestamp (field 8), empty when the time is zero.
    out = ld(1, name) + ld(2, "")
    if namespace:
        out += ld(3, namespace)
    out += ld(8, b"")
    for k, v in (labels or {}).items():
        out += map_entry(11, k, v)
    return out


def test_namespace_body_decodes_to_json_object() -> None:
    ns = ld(1, object_meta("ns1", labels={"team": "storage", "env": "dev"})) + ld(2, ld(1, "kubernetes"))
    obj = decode(envelope("v1", "Namespace", ns))
    meta = obj.pop("metadata")
    assert obj == {"apiVersion": "v1", "kind": "Namespace", "spec": {"finalizers": ["kubernetes"]}}
    assert meta["name"] == "ns1"
    assert meta["labels"] == {"team": "storage", "env": "dev"}


def test_zero_creation_timestamp_decodes_to_no_timestamp() -> None:
    """metav1.Time.Unmarshal turns an empty message into the zero time, which JSON renders as null."""
    obj = decode(envelope("v1", "Namespace", ld(1, object_meta("ns1"))))
    assert obj["metadata"].get("creationTimestamp") is None


def test_creation_timestamp_decodes_to_rfc3339() -> None:
    meta = ld(1, "ns1") + ld(8, vint(1, 1700000000) + vint(2, 5))
    obj = decode(envelope("v1", "Namespace", ld(1, meta)))
    assert obj["metadata"]["creationTimestamp"] == "2023-11-14T22:13:20Z"


def test_secret_body_decodes_data_as_base64_and_string_data_as_text() -> None:
    secret = (ld(1, object_meta("creds", "ns1"))
              + map_entry(2, "password", b"\x00s3cr\xffet")
              + map_entry(2, "empty", b"")
              + ld(3, "Opaque")
              + map_entry(4, "user", "admin")
              + vint(5, 1))
    obj = decode(envelope("v1", "Secret", secret))
    assert obj["apiVersion"] == "v1" and obj["kind"] == "Secret"
    assert obj["metadata"]["name"] == "creds" and obj["metadata"]["namespace"] == "ns1"
    assert obj["data"] == {"password": base64.b64encode(b"\x00s3cr\xffet").decode(), "empty": ""}
    assert obj["stringData"] == {"user": "admin"}
    assert obj["type"] == "Opaque"
    assert obj["immutable"] is True


def test_quantities_in_resource_quota_decode_to_strings() -> None:
    spec = map_entry(1, "requests.storage", ld(1, "10Gi")) + map_entry(1, "pods", ld(1, "5"))
    obj = decode(envelope("v1", "ResourceQuota", ld(1, object_meta("q", "ns1")) + ld(2, spec)))
    assert obj["spec"] == {"hard": {"requests.storage": "10Gi", "pods": "5"}}


def test_unknown_fields_are_dropped() -> None:
    cm = ld(1, object_meta("cm")) + map_entry(2, "k", "v") + ld(99, "future") + vint(98, 7)
    obj = decode(envelope("v1", "ConfigMap", cm))
    assert obj["data"] == {"k": "v"}
    assert set(obj) == {"apiVersion", "kind", "metadata", "data"}


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [pytest.param("v1", "Pod", id="pod"), pytest.param("apps/v1", "Deployment", id="deployment"),
     pytest.param("v2", "Namespace", id="unknown-version")],
)
def test_unsupported_kind_is_415(api_version: str, kind: str) -> None:
    with pytest.raises(APIError) as exc:
        decode(envelope(api_version, kind, ld(1, object_meta("x"))))
    assert exc.value.code == 415
    assert exc.value.reason == "UnsupportedMediaType"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"kind": "Namespace"}', id="json-without-magic"),
        pytest.param(MAGIC + b"\x0a\x05ab", id="truncated-field"),
        pytest.param(MAGIC + b"\x0a\xff", id="truncated-varint"),
    ],
)
def test_malformed_body_is_400(body: bytes) -> None:
    with pytest.raises(APIError) as exc:
        decode(body)
    assert exc.value.code == 400
