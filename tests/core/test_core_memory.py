"""LRU under maxmemory, and what doctor() says about the server's memory settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import valkey

from servers import Server, start_standalone
from valkey_rag_cache import AnswerCache, Source

pytestmark = pytest.mark.standalone


@pytest.fixture
def small_server() -> Iterator[Server]:
    server = start_standalone(maxmemory="3mb", maxmemory_policy="volatile-lru")
    yield server
    server.stop()


def test_lru_evicts_under_maxmemory_and_never_serves_stale(small_server: Server, prefix: str) -> None:
    cache = AnswerCache(small_server.url, prefix=prefix, namespace="docs")
    raw = valkey.Valkey(port=small_server.port)
    keys = []
    for i in range(3000):
        key = cache.key("qa", i)
        cache.lookup(key)
        cache.store(key, "x" * 1000, [Source(f"doc-{i % 50}", "static")])
        keys.append(key)
    assert int(raw.info("stats")["evicted_keys"]) > 0
    assert int(raw.info("memory")["used_memory"]) <= 4 * 1024 * 1024
    survivors = [k for k in keys if cache.lookup(k) is not None]
    assert survivors  # the most recent answers are still served
    cache.invalidate_sources([f"doc-{i}" for i in range(50)])
    assert all(cache.lookup(k) is None for k in survivors)
    assert cache.doctor().ok


def test_doctor_names_noeviction_without_maxmemory(prefix: str) -> None:
    server = start_standalone(maxmemory_policy="noeviction")
    try:
        report = AnswerCache(server.url, prefix=prefix).doctor()
        assert not report.ok
        assert any("noeviction" in p for p in report.problems)
    finally:
        server.stop()


def test_doctor_names_untimed_keys_under_volatile_lru(small_server: Server, prefix: str) -> None:
    cache = AnswerCache(small_server.url, prefix=prefix, namespace="docs:technical")
    key = cache.key("qa", 1)
    cache.lookup(key)
    cache.store(key, "a", ["doc"])
    cache.invalidate_namespace("docs")
    assert cache.doctor().ok  # the untimed version and namespace tokens are the cache's own small keys
    valkey.Valkey(port=small_server.port).set(f"{prefix}:stray", "no ttl")
    report = cache.doctor()
    assert any("no TTL" in p for p in report.problems)


@pytest.mark.cluster
def test_doctor_names_allkeys_in_a_cluster(cluster_url: str, prefix: str) -> None:
    client = valkey.cluster.ValkeyCluster.from_url(cluster_url)
    client.config_set(
        "maxmemory-policy", "allkeys-lru", target_nodes=client.ALL_NODES
    )  # the test, not the cache
    try:
        report = AnswerCache(cluster_url, prefix=prefix).doctor()
        assert any("allkeys" in p for p in report.problems)
    finally:
        client.config_set("maxmemory-policy", "noeviction", target_nodes=client.ALL_NODES)
