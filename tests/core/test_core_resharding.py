"""A cluster that reshards: a slot that moved, a slot being migrated, on the session's real 3-primary cluster.

A cache instance whose slot map predates the move must still invalidate (following MOVED and refreshing its
map), sync and async alike; mid-migration, invalidations retry within the timeout and then raise
`InvalidationError`, and lookups are quiet misses. Every test moves its slot back, so the cluster is left
as it was found.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
from valkey.cluster import key_slot

from valkey_rag_cache import AnswerCache, InvalidationError

pytestmark = pytest.mark.cluster


class Slots:
    """Moves one hash slot between primaries the way `valkey-cli --cluster reshard` does."""

    def __init__(self, nodes: list[Any]) -> None:
        self.admins = {n.port: valkey.Valkey(port=n.port, decode_responses=True) for n in nodes}
        self.ids = {port: c.execute_command("CLUSTER", "MYID") for port, c in self.admins.items()}

    def owner(self, slot: int) -> int:
        for start, end, primary, *_ in next(iter(self.admins.values())).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(primary[1])
        raise LookupError(slot)

    def begin(self, slot: int, src: int, dst: int) -> None:
        self.admins[dst].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.ids[src])
        self.admins[src].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.ids[dst])

    def migrate(self, src: int, dst: int, keys: list[str]) -> None:
        self.admins[src].execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "REPLACE", "KEYS", *keys)

    def finish(self, slot: int, src: int, dst: int) -> None:
        while keys := self.admins[src].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            self.migrate(src, dst, keys)
        for port in [dst, src, *(p for p in self.admins if p not in (src, dst))]:
            self.admins[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", self.ids[dst])

    def move(self, slot: int, src: int, dst: int) -> None:
        self.begin(slot, src, dst)
        self.finish(slot, src, dst)


@pytest.fixture
def slots(valkey_cluster: Any) -> Slots:
    return Slots(valkey_cluster.nodes)


@pytest.fixture
def moving(slots: Slots, prefix: str) -> Iterator[tuple[int, int, int]]:
    """The slot of this test's `docs` tree, its owner and another primary; the slot goes home afterwards."""
    slot = key_slot(f"{prefix}:{{docs}}:clock".encode())
    src = slots.owner(slot)
    dst = next(p for p in slots.admins if p != src)
    yield slot, src, dst
    where = slots.owner(slot)
    for port in slots.admins:  # a migration the test left open is completed first
        state = slots.admins[port].execute_command("CLUSTER", "NODES")
        if f"[{slot}-<-" in state or f"[{slot}->-" in state:
            slots.finish(slot, src, dst)
            where = dst
            break
    if where != src:
        slots.move(slot, where, src)


def _warm(cache: AnswerCache, ingest: AnswerCache, key: Any) -> None:
    assert cache.lookup(key) is None
    assert cache.store(key, "v1", ["doc"])
    assert cache.invalidate_source("doc") == 1  # this instance's slot map is loaded (and soon out of date)
    assert ingest.invalidate_all() is None
    assert cache.lookup(key) is None
    assert cache.store(key, "v2", ["doc"])


# -- a slot that moved ----------------------------------------------------------------------------------


def test_invalidations_follow_a_slot_that_moved(
    cluster_url: str, prefix: str, slots: Slots, moving: tuple[int, int, int]
) -> None:
    slot, src, dst = moving
    cache = AnswerCache(cluster_url, prefix=prefix, namespace="docs")
    ingest = AnswerCache(cluster_url, prefix=prefix, namespace="docs")
    key = cache.key("qa", "q")
    _warm(cache, ingest, key)
    client = cache.connector.sync_client()
    clock = f"{prefix}:{{docs}}:clock"
    assert client.get_node_from_key(clock).port == src
    slots.move(slot, src, dst)
    assert cache.invalidate_source("doc") == 1  # its map still says `src`: MOVED is followed
    assert client.get_node_from_key(clock).port == dst  # and the map is refreshed
    assert cache.lookup(key) is None
    assert cache.store(key, "v3", ["doc"])
    assert cache.invalidate_all() is None
    assert cache.lookup(key) is None
    assert cache.dependents("doc") == []


async def test_async_invalidations_follow_a_slot_that_moved(
    cluster_url: str, prefix: str, slots: Slots, moving: tuple[int, int, int]
) -> None:
    slot, src, dst = moving
    cache = AnswerCache(cluster_url, prefix=prefix, namespace="docs")
    key = cache.key("qa", "q")
    assert await cache.alookup(key) is None
    assert await cache.astore(key, "v1", ["doc"])
    assert await cache.ainvalidate_source("doc") == 1  # this instance's slot map is loaded
    assert await cache.alookup(key) is None
    assert await cache.astore(key, "v2", ["doc"])
    slots.move(slot, src, dst)
    assert await cache.ainvalidate_source("doc") == 1
    assert await cache.alookup(key) is None
    assert await cache.astore(key, "v3", ["doc"])
    await cache.ainvalidate_all()
    assert await cache.alookup(key) is None


# -- a slot being migrated ------------------------------------------------------------------------------


def test_mid_migration_invalidations_raise_invalidation_error_and_lookups_are_quiet_misses(
    cluster_url: str,
    prefix: str,
    slots: Slots,
    moving: tuple[int, int, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    slot, src, dst = moving
    cache = AnswerCache(cluster_url, prefix=prefix, namespace="docs", timeout=0.3, retry_after=0.0)
    ingest = AnswerCache(cluster_url, prefix=prefix, namespace="docs", timeout=0.3)
    key = cache.key("qa", "q")
    _warm(cache, ingest, key)
    slots.begin(slot, src, dst)
    slots.migrate(src, dst, [f"{prefix}:{{docs}}:clock"])  # the tree's keys are split between two nodes
    with caplog.at_level(logging.WARNING, logger="valkey_rag_cache"):
        for _ in range(3):
            assert cache.lookup(key) is None
        with pytest.raises(InvalidationError, match="being moved"):
            ingest.invalidate_source("doc")
        with pytest.raises(InvalidationError, match="being moved"):
            ingest.invalidate_all()
        with pytest.raises(InvalidationError, match="being moved"):
            ingest.invalidate_namespace()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1  # one outage
    slots.finish(slot, src, dst)
    assert ingest.invalidate_source("doc") == 1  # the migration is over: invalidations work again
    assert cache.lookup(key) is None


async def test_mid_migration_async_invalidations_raise_invalidation_error(
    cluster_url: str,
    prefix: str,
    slots: Slots,
    moving: tuple[int, int, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    slot, src, dst = moving
    cache = AnswerCache(cluster_url, prefix=prefix, namespace="docs", timeout=0.3, retry_after=0.0)
    key = cache.key("qa", "q")
    assert await cache.alookup(key) is None
    assert await cache.astore(key, "v1", ["doc"])
    slots.begin(slot, src, dst)
    slots.migrate(src, dst, [f"{prefix}:{{docs}}:clock"])
    with caplog.at_level(logging.WARNING, logger="valkey_rag_cache"):
        assert await cache.alookup(key) is None
        with pytest.raises(InvalidationError, match="being moved"):
            await cache.ainvalidate_source("doc")
        with pytest.raises(InvalidationError, match="being moved"):
            await cache.ainvalidate_all()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    slots.finish(slot, src, dst)
    assert await cache.ainvalidate_source("doc") == 1
    assert await cache.alookup(key) is None


def test_an_invalidation_waits_out_a_migration_that_ends_within_the_timeout(
    cluster_url: str, prefix: str, slots: Slots, moving: tuple[int, int, int]
) -> None:
    slot, src, dst = moving
    cache = AnswerCache(cluster_url, prefix=prefix, namespace="docs", timeout=5.0)
    key = cache.key("qa", "q")
    ingest = AnswerCache(cluster_url, prefix=prefix, namespace="docs")
    _warm(cache, ingest, key)
    slots.begin(slot, src, dst)
    slots.migrate(src, dst, [f"{prefix}:{{docs}}:clock"])
    finisher = threading.Timer(0.2, slots.finish, args=(slot, src, dst))
    finisher.start()
    try:
        assert cache.invalidate_source("doc") == 1  # retried until the slot settled on `dst`
    finally:
        finisher.join()
    assert cache.lookup(key) is None
