"""Watch as Kubernetes does it: one global revision, resume, bookmarks, selectors, 410 after compaction."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from tests.conftest import VdiskProcess, start_vdisk


@pytest.fixture(scope="module")
def compacting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VdiskProcess]:
    """An API server that keeps 5 revisions of history, compacts every 0.3 s and bookmarks every 0.5 s."""
    vp = start_vdisk(tmp_path_factory.mktemp("compacting"), "--history-retain", "5", "--compact-interval", "0.3",
                     "--bookmark-interval", "0.5", command="apiserver")
    yield vp
    vp.stop()


def cm(name: str, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}}


def create(c: httpx.Client, ns: str, obj: dict) -> dict:
    r = c.post(f"/api/v1/namespaces/{ns}/configmaps", json=obj)
    assert r.status_code == 201, r.text
    return r.json()


def watch_lines(c: httpx.Client, path: str, params: dict[str, str], count: int, timeout: float = 10) -> list[dict]:
    out: list[dict] = []
    with c.stream("GET", path, params={"watch": "true", **params}, timeout=timeout) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        for line in r.iter_lines():
            if line:
                out.append(json.loads(line))
            if len(out) >= count:
                break
    return out


def test_resource_versions_are_one_increasing_counter_across_kinds(vdisk: VdiskProcess, namespace: str) -> None:
    with vdisk.http() as c:
        a = create(c, namespace, cm("a"))
        s = c.post(f"/api/v1/namespaces/{namespace}/secrets", json={
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}).json()
        b = create(c, namespace, cm("b"))
        rvs = [int(o["metadata"]["resourceVersion"]) for o in (a, s, b)]
        assert rvs == sorted(rvs) and len(set(rvs)) == 3
        listed = c.get(f"/api/v1/namespaces/{namespace}/configmaps").json()
        assert int(listed["metadata"]["resourceVersion"]) >= rvs[-1]


def test_watch_resumes_from_a_resource_version(vdisk: VdiskProcess, namespace: str) -> None:
    with vdisk.http() as c:
        a = create(c, namespace, cm("a"))
        create(c, namespace, cm("b"))
        c.delete(f"/api/v1/namespaces/{namespace}/configmaps/a")
        events = watch_lines(c, f"/api/v1/namespaces/{namespace}/configmaps",
                             {"resourceVersion": a["metadata"]["resourceVersion"]}, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b"), ("DELETED", "a")]
    # the DELETED object carries the revision of the deletion
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(events[0]["object"]["metadata"]
                                                                          ["resourceVersion"])


def test_watch_without_version_starts_with_current_objects(vdisk: VdiskProcess, namespace: str) -> None:
    with vdisk.http() as c:
        create(c, namespace, cm("a"))
        create(c, namespace, cm("b"))
        events = watch_lines(c, f"/api/v1/namespaces/{namespace}/configmaps", {}, 2)
    assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in events) == [("ADDED", "a"), ("ADDED", "b")]


def test_objects_leaving_a_label_selector_are_sent_as_deleted(vdisk: VdiskProcess, namespace: str) -> None:
    with vdisk.http() as c:
        start = create(c, namespace, cm("x", {"app": "web"}))

        def relabel(value: str) -> None:
            c.patch(f"/api/v1/namespaces/{namespace}/configmaps/x",
                    content=json.dumps({"metadata": {"labels": {"app": value}}}),
                    headers={"Content-Type": "application/merge-patch+json"})

        relabel("db")
        relabel("web")
        create(c, namespace, cm("other", {"app": "db"}))
        events = watch_lines(c, f"/api/v1/namespaces/{namespace}/configmaps",
                             {"resourceVersion": start["metadata"]["resourceVersion"], "labelSelector": "app=web"}, 2)
    assert [(e["type"], e["object"]["metadata"]["labels"]["app"]) for e in events] == [("DELETED", "db"),
                                                                                       ("ADDED", "web")]


def test_field_selector_on_watch(vdisk: VdiskProcess, namespace: str) -> None:
    with vdisk.http() as c:
        start = create(c, namespace, cm("one"))
        create(c, namespace, cm("two"))
        create(c, namespace, cm("three"))
        events = watch_lines(c, f"/api/v1/namespaces/{namespace}/configmaps",
                             {"resourceVersion": start["metadata"]["resourceVersion"],
                              "fieldSelector": "metadata.name=three"}, 1)
    assert events[0]["object"]["metadata"]["name"] == "three"


def test_timeout_seconds_ends_the_stream(vdisk: VdiskProcess, namespace: str) -> None:
    with vdisk.http() as c:
        t0 = time.monotonic()
        with c.stream("GET", f"/api/v1/namespaces/{namespace}/configmaps",
                      params={"watch": "1", "timeoutSeconds": "1", "resourceVersion": "0"}) as r:
            lines = list(r.iter_lines())
        assert 0.9 <= time.monotonic() - t0 < 5
        assert lines == [] or all(json.loads(x)["type"] == "ADDED" for x in lines if x)


def test_bookmarks_are_sent_when_asked_for(compacting: VdiskProcess) -> None:
    with compacting.http() as c:
        rv = c.get("/api/v1/namespaces/default/configmaps").json()["metadata"]["resourceVersion"]
        events = watch_lines(c, "/api/v1/namespaces/default/configmaps",
                             {"resourceVersion": rv, "allowWatchBookmarks": "true"}, 1, timeout=5)
    assert events[0]["type"] == "BOOKMARK"
    assert events[0]["object"]["kind"] == "ConfigMap"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_send_initial_events_ends_with_an_annotated_bookmark(vdisk: VdiskProcess, namespace: str) -> None:
    with vdisk.http() as c:
        create(c, namespace, cm("a"))
        events = watch_lines(c, f"/api/v1/namespaces/{namespace}/configmaps",
                             {"sendInitialEvents": "true", "allowWatchBookmarks": "true",
                              "resourceVersionMatch": "NotOlderThan"}, 2)
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_table_watch_sends_column_definitions_once(vdisk: VdiskProcess, namespace: str) -> None:
    with vdisk.http() as c:
        create(c, namespace, cm("a"))
        create(c, namespace, cm("b"))
        with c.stream("GET", f"/api/v1/namespaces/{namespace}/configmaps", params={"watch": "true"},
                      headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}) as r:
            events = []
            for line in r.iter_lines():
                events.append(json.loads(line))
                if len(events) == 2:
                    break
    assert events[0]["object"]["kind"] == "Table"
    assert [col["name"] for col in events[0]["object"]["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert events[1]["object"]["columnDefinitions"] is None
    assert events[1]["object"]["rows"][0]["cells"][0] in ("a", "b")


def test_watch_from_a_compacted_version_is_410_expired(compacting: VdiskProcess) -> None:
    ns = "default"
    with compacting.http() as c:
        first = create(c, ns, cm(f"old-{time.time_ns()}"))
        for i in range(12):
            create(c, ns, cm(f"fill-{time.time_ns()}-{i}"))
        time.sleep(1.0)  # compaction runs every 0.3 s and keeps 5 revisions
        events = watch_lines(c, f"/api/v1/namespaces/{ns}/configmaps",
                             {"resourceVersion": first["metadata"]["resourceVersion"]}, 1)
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["code"] == 410 and status["reason"] == "Expired"
    assert status["message"].startswith(f"too old resource version: {first['metadata']['resourceVersion']} (")


def test_lightkube_watch_resume_and_410(compacting: VdiskProcess) -> None:
    """The controllers' client sees the same semantics: resume from a version, ApiError 410 when compacted."""

    async def scenario() -> None:
        client = AsyncClient(config=KubeConfig.from_file(str(compacting.kubeconfig)), trust_env=False)
        try:
            created = await client.create(ConfigMap(metadata=ObjectMeta(name=f"lk-{time.time_ns()}")), namespace="default")
            rv = created.metadata.resourceVersion
            second = await client.create(ConfigMap(metadata=ObjectMeta(name=f"lk2-{time.time_ns()}")), namespace="default")
            seen = []
            async for typ, obj in client.watch(ConfigMap, namespace="default", resource_version=rv):
                seen.append((typ, obj.metadata.name))
                break
            assert seen == [("ADDED", second.metadata.name)]
            for i in range(10):
                await client.create(ConfigMap(metadata=ObjectMeta(name=f"lkf-{time.time_ns()}-{i}")), namespace="default")
            await asyncio.sleep(1.0)
            with pytest.raises(ApiError) as exc:
                async for _ in client.watch(ConfigMap, namespace="default", resource_version=rv):
                    pass
            assert exc.value.status.code == 410
        finally:
            await client.close()

    asyncio.run(scenario())


def test_a_slow_watcher_does_not_block_writers(vdisk: VdiskProcess, namespace: str) -> None:
    """A watcher that never reads must not delay creates (the hub drops slow consumers, never blocks)."""
    with vdisk.http() as c, vdisk.http() as w:
        with w.stream("GET", f"/api/v1/namespaces/{namespace}/configmaps", params={"watch": "true"}):
            t0 = time.monotonic()
            for i in range(50):
                create(c, namespace, cm(f"n{i}"))
            assert time.monotonic() - t0 < 10


