"""The SQLite log store: one global revision, conflicts, compaction, persistence and change listeners."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vdisk.apiserver.errors import APIError
from vdisk.apiserver.store import ADDED, DELETED, MODIFIED, Event, Store, StoreConflict, make_key, split_key

Obj = dict[str, Any]

PVCS = ("", "persistentvolumeclaims")
DVS = ("cdi.kubevirt.io", "datavolumes")
NODES = ("", "nodes")


def obj(name: str, **fields: Any) -> Obj:
    return {"metadata": {"name": name}, **fields}


def rv(o: Obj) -> int:
    return int(o["metadata"]["resourceVersion"])


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens the same database file each call; every store opened is closed at teardown."""
    opened: list[Store] = []

    def open_() -> Store:
        s = Store(str(tmp_path / "db.sqlite"))
        s.open()
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    return open_store()


def reopen(store: Store, open_store: Callable[[], Store]) -> Store:
    store.close()
    return open_store()


def test_writes_share_one_increasing_revision_across_resources(store: Store) -> None:
    a = store.create(PVCS, "ns1", "a", obj("a"))
    b = store.create(DVS, "ns1", "b", obj("b"))
    n = store.create(NODES, "", "n", obj("n"))
    a2 = store.update(PVCS, "ns1", "a", obj("a", spec={"x": 1}))
    gone = store.delete(DVS, "ns1", "b")
    assert [rv(a), rv(b), rv(n), rv(a2), rv(gone)] == [1, 2, 3, 4, 5]
    assert store.revision == 5


def test_get_and_list_return_current_objects_in_key_order(store: Store) -> None:
    store.create(PVCS, "ns2", "a", obj("a"))
    store.create(PVCS, "ns1", "b", obj("b"))
    store.create(PVCS, "ns1", "a", obj("a"))
    assert store.get(PVCS, "ns1", "b") == {"metadata": {"name": "b", "resourceVersion": "2"}}
    assert store.get(PVCS, "ns1", "zzz") is None
    assert [(o["metadata"]["name"], o["metadata"]["resourceVersion"]) for o in store.list(PVCS)] == [
        ("a", "3"), ("b", "2"), ("a", "1")]
    assert [o["metadata"]["name"] for o in store.list(PVCS, "ns1")] == ["a", "b"]
    assert store.count(PVCS) == 3 and store.count(PVCS, "ns2") == 1
    assert store.list(DVS) == []


def test_create_of_existing_object_raises_conflict_with_current(store: Store) -> None:
    store.create(PVCS, "ns1", "a", obj("a"))
    with pytest.raises(StoreConflict) as exc:
        store.create(PVCS, "ns1", "a", obj("a"))
    assert exc.value.current is not None and rv(exc.value.current) == 1
    assert store.revision == 1


def test_update_with_stale_revision_raises_conflict_and_changes_nothing(store: Store) -> None:
    store.create(PVCS, "ns1", "a", obj("a"))
    store.update(PVCS, "ns1", "a", obj("a", spec={"v": 2}), expect_rev=1)
    with pytest.raises(StoreConflict) as exc:
        store.update(PVCS, "ns1", "a", obj("a", spec={"v": 3}), expect_rev=1)
    assert exc.value.current is not None and rv(exc.value.current) == 2
    current = store.get(PVCS, "ns1", "a")
    assert current is not None and current["spec"] == {"v": 2}
    assert store.revision == 2


def test_delete_with_stale_revision_raises_conflict(store: Store) -> None:
    store.create(PVCS, "ns1", "a", obj("a"))
    store.update(PVCS, "ns1", "a", obj("a"))
    with pytest.raises(StoreConflict):
        store.delete(PVCS, "ns1", "a", expect_rev=1)
    assert store.get(PVCS, "ns1", "a") is not None


@pytest.mark.parametrize("op", ["update", "delete"])
def test_update_or_delete_of_missing_object_raises_conflict_without_current(store: Store, op: str) -> None:
    with pytest.raises(StoreConflict) as exc:
        if op == "update":
            store.update(PVCS, "ns1", "a", obj("a"))
        else:
            store.delete(PVCS, "ns1", "a")
    assert exc.value.current is None
    assert store.revision == 0


def test_delete_returns_last_state_at_the_deletion_revision(store: Store) -> None:
    store.create(PVCS, "ns1", "a", obj("a", spec={"x": 1}))
    final = store.delete(PVCS, "ns1", "a")
    assert final == {"metadata": {"name": "a", "resourceVersion": "2"}, "spec": {"x": 1}}
    assert store.get(PVCS, "ns1", "a") is None
    assert store.count(PVCS) == 0


def test_listeners_see_added_modified_deleted_with_previous_objects(store: Store) -> None:
    seen: list[Event] = []
    unsubscribe = store.subscribe(seen.append)
    store.create(PVCS, "ns1", "a", obj("a", spec={"v": 1}))
    store.update(PVCS, "ns1", "a", obj("a", spec={"v": 2}))
    store.delete(PVCS, "ns1", "a")
    unsubscribe()
    store.create(PVCS, "ns1", "b", obj("b"))
    assert [(e.type, e.rev, e.rid, e.namespace, e.name) for e in seen] == [
        (ADDED, 1, PVCS, "ns1", "a"), (MODIFIED, 2, PVCS, "ns1", "a"), (DELETED, 3, PVCS, "ns1", "a")]
    added, modified, deleted = seen
    assert added.prev is None and added.obj["spec"] == {"v": 1}
    assert modified.prev is not None and modified.prev["spec"] == {"v": 1} and modified.obj["spec"] == {"v": 2}
    assert deleted.prev is not None and rv(deleted.prev) == 2 and rv(deleted.obj) == 3


def test_a_failing_listener_does_not_break_writes_or_other_listeners(store: Store) -> None:
    seen: list[str] = []

    def broken(_: Event) -> None:
        raise RuntimeError("boom")

    store.subscribe(broken)
    store.subscribe(lambda e: seen.append(e.name))
    store.create(PVCS, "ns1", "a", obj("a"))
    assert seen == ["a"]
    assert store.get(PVCS, "ns1", "a") is not None


def test_history_since_returns_later_events_oldest_first(store: Store) -> None:
    for name in ("a", "b", "c"):
        store.create(PVCS, "ns1", name, obj(name))
    assert [e.rev for e in store.history_since(0)] == [1, 2, 3]
    assert [e.name for e in store.history_since(1)] == ["b", "c"]
    assert store.history_since(3) == []
    assert store.history_since(99) == []


def test_history_before_compaction_is_410_expired(store: Store) -> None:
    for i in range(6):
        store.create(PVCS, "ns1", f"o{i}", obj(f"o{i}"))
    assert store.compact(keep=2) == 4
    assert store.compact_revision == 4
    assert [e.rev for e in store.history_since(4)] == [5, 6]
    with pytest.raises(APIError) as exc:
        store.history_since(3)
    assert exc.value.code == 410
    assert exc.value.reason == "Expired"
    assert exc.value.message == "too old resource version: 3 (4)"


def test_compaction_keeps_current_objects(store: Store, open_store: Callable[[], Store]) -> None:
    store.create(PVCS, "ns1", "a", obj("a", spec={"v": 1}))
    store.update(PVCS, "ns1", "a", obj("a", spec={"v": 2}))
    store.create(PVCS, "ns1", "b", obj("b"))
    store.delete(PVCS, "ns1", "b")
    store.compact(keep=0)
    store = reopen(store, open_store)
    current = store.get(PVCS, "ns1", "a")
    assert current is not None and current["spec"] == {"v": 2} and rv(current) == 2
    assert store.get(PVCS, "ns1", "b") is None


def test_compaction_with_nothing_to_forget_keeps_the_compact_revision(store: Store) -> None:
    store.create(PVCS, "ns1", "a", obj("a"))
    assert store.compact(keep=10) == 0
    assert store.history_since(0)[0].name == "a"


def test_reopening_restores_objects_and_revision(store: Store, open_store: Callable[[], Store]) -> None:
    store.create(PVCS, "ns1", "a", obj("a", spec={"v": 1}))
    store.create(NODES, "", "n", obj("n"))
    store.update(PVCS, "ns1", "a", obj("a", spec={"v": 2}))
    store.create(DVS, "ns1", "gone", obj("gone"))
    store.delete(DVS, "ns1", "gone")
    store = reopen(store, open_store)
    assert store.revision == 5
    a = store.get(PVCS, "ns1", "a")
    assert a == {"metadata": {"name": "a", "resourceVersion": "3"}, "spec": {"v": 2}}
    assert store.get(NODES, "", "n") is not None
    assert store.get(DVS, "ns1", "gone") is None
    assert [(e.type, e.name) for e in store.history_since(2)] == [
        (MODIFIED, "a"), (ADDED, "gone"), (DELETED, "gone")]
    assert rv(store.create(PVCS, "ns1", "b", obj("b"))) == 6


def test_reopening_after_compacting_everything_keeps_revision_and_compact_revision(
        store: Store, open_store: Callable[[], Store]) -> None:
    store.create(PVCS, "ns1", "a", obj("a"))
    store.delete(PVCS, "ns1", "a")
    store.compact(keep=0)
    store = reopen(store, open_store)
    assert store.revision == 2
    assert store.compact_revision == 2
    with pytest.raises(APIError) as exc:
        store.history_since(1)
    assert exc.value.code == 410
    assert rv(store.create(PVCS, "ns1", "a", obj("a"))) == 3


def test_recreating_a_deleted_key_after_compaction_survives_reopen(
        store: Store, open_store: Callable[[], Store]) -> None:
    store.create(PVCS, "ns1", "a", obj("a", spec={"gen": 1}))
    store.delete(PVCS, "ns1", "a")
    store.create(PVCS, "ns1", "x", obj("x"))
    store.compact(keep=1)
    again = store.create(PVCS, "ns1", "a", obj("a", spec={"gen": 2}))
    assert rv(again) == 4
    store = reopen(store, open_store)
    current = store.get(PVCS, "ns1", "a")
    assert current is not None and current["spec"] == {"gen": 2} and rv(current) == 4
    assert store.get(PVCS, "ns1", "x") is not None


@pytest.mark.parametrize(
    ("rid", "namespace", "name", "key"),
    [
        pytest.param(PVCS, "ns1", "a", "/core/persistentvolumeclaims/ns1/a", id="core-namespaced"),
        pytest.param(NODES, "", "n", "/core/nodes/n", id="core-cluster-scoped"),
        pytest.param(DVS, "ns1", "dv", "/cdi.kubevirt.io/datavolumes/ns1/dv", id="group-namespaced"),
    ],
)
def test_keys_round_trip(rid: tuple[str, str], namespace: str, name: str, key: str) -> None:
    assert make_key(rid, namespace, name) == key
    assert split_key(key) == (rid, namespace, name)
