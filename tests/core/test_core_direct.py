"""The direct line (`direct.py`): a connection per thread for lookups and writes, the normal path behind it.

Real standalone Valkey only: fakeredis and cluster clients never get a line (they keep the normal path).
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest
import valkey

from valkey_rag_cache import AnswerCache
from valkey_rag_cache.direct import DirectLine, direct_line

pytestmark = pytest.mark.standalone


@pytest.fixture
def cache(standalone_url: str, prefix: str) -> AnswerCache:
    return AnswerCache(standalone_url, prefix=prefix, namespace="direct")


def cached(cache: AnswerCache, key: Any, value: Any, sources: list[str]) -> None:
    """The miss and the write after it, as an app makes them (the write is checked against the miss)."""
    cache.lookup(key)
    assert cache.store(key, value, sources)


def line_of(cache: AnswerCache) -> DirectLine:
    client = cache.connector.sync_client()
    line = cache._sync._direct(client)
    assert line is not None, "a plain standalone client gets a direct line"
    return line


def addr(conn: Any) -> str:
    host, port = conn._sock.getsockname()[:2]
    return f"{host}:{port}"


def test_lookups_and_writes_go_over_the_line_not_the_pool(cache: AnswerCache, standalone_url: str) -> None:
    key = cache.key("qa", "over the line")
    assert cache.lookup(key) is None
    assert cache.store(key, "v", ["doc"])
    assert cache.lookup(key).value == "v"  # type: ignore[union-attr]
    conn = line_of(cache)._local.conn
    assert conn is not None and conn._sock is not None  # the line's own connection carried the scripts
    # The client's pool served at most the scripts' loading (NOSCRIPT on a fresh server), never a script call.
    for _ in range(5):
        assert cache.lookup(key) is not None
    admin = valkey.Valkey.from_url(standalone_url)
    last_command = {c["addr"]: c["cmd"] for c in admin.client_list()}
    line_addr = addr(conn)
    assert last_command[line_addr] in ("evalsha", "hmget")  # a script, or the script-free hit (peek)
    pool = cache.connector.sync_client().connection_pool
    for pooled in pool._available_connections:
        assert last_command[addr(pooled)] not in ("evalsha", "hmget")


def test_a_killed_line_falls_back_to_the_normal_path_and_serves_the_hit(
    cache: AnswerCache, standalone_url: str
) -> None:
    key = cache.key("qa", "killed")
    cached(cache, key, "v", ["doc"])
    line = line_of(cache)
    conn = line._local.conn
    admin = valkey.Valkey.from_url(standalone_url)
    admin.client_kill_filter(_id=line.send("CLIENT", "ID"))
    # The line's socket is dead: the lookup is sent again through the client's pool, and still hits.
    hit = cache.lookup(key)
    assert hit is not None and hit.value == "v"
    assert cache.health.should_skip() is False
    # The next call makes a fresh line.
    assert cache.lookup(key) is not None
    assert line_of(cache)._local.conn is not conn


def test_each_thread_has_its_own_line(cache: AnswerCache) -> None:
    keys = [cache.key("qa", f"thread-{i}") for i in range(32)]
    for i, key in enumerate(keys):
        cached(cache, key, f"v{i}", ["doc"])
    errors: list[str] = []
    conns: set[int] = set()
    lock = threading.Lock()

    def reader(offset: int) -> None:
        for n in range(200):
            i = (offset + n) % len(keys)
            hit = cache.lookup(keys[i])
            if hit is None or hit.value != f"v{i}":
                errors.append(f"{i}: {hit}")
        with lock:
            conns.add(id(line_of(cache)._local.conn))

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []  # every reply reached the thread that asked (no reply read by another thread)
    assert len(conns) == 6


def _child_lookup(url: str, prefix: str, out: Any) -> None:
    cache = _SHARED[0]
    key = cache.key("qa", "forked")
    hit = cache.lookup(key)
    out.put((hit.value if hit else None, id(line_of(cache)._local.conn) != _SHARED[1]))


_SHARED: list[Any] = []


def test_a_forked_child_makes_its_own_line(cache: AnswerCache, standalone_url: str, prefix: str) -> None:
    key = cache.key("qa", "forked")
    cached(cache, key, "v", ["doc"])
    assert cache.lookup(key) is not None
    _SHARED[:] = [cache, id(line_of(cache)._local.conn)]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_lookup, args=(standalone_url, prefix, out))
    child.start()
    value, own = out.get(timeout=10)
    child.join(10)
    assert value == "v" and own  # the child never reads replies meant for its parent's socket
    assert cache.lookup(key).value == "v"  # type: ignore[union-attr]  # nor the parent the child's


def test_only_plain_standalone_clients_get_a_line(standalone_url: str) -> None:
    import fakeredis

    assert direct_line(valkey.Valkey.from_url(standalone_url)) is not None
    assert direct_line(fakeredis.FakeValkey()) is None

    class Custom(valkey.Connection):
        pass

    pool = valkey.ConnectionPool.from_url(standalone_url, connection_class=Custom)
    assert direct_line(valkey.Valkey(connection_pool=pool)) is None


# -- the script-free hit (`lookup.peek`) -------------------------------------------------------------------


def test_a_lookup_on_a_replica_is_a_miss_not_a_copy_that_may_lag(standalone_url: str, prefix: str) -> None:
    from servers import start_standalone

    primary = start_standalone(repl_diskless_sync_delay="0")
    replica = start_standalone(replicaof=f"127.0.0.1 {primary.port}")
    try:
        url = f"valkey://127.0.0.1:{primary.port}"
        writer = AnswerCache(url, prefix=prefix, namespace="lag")
        key = writer.key("qa", "replicated")
        cached(writer, key, "v", ["doc"])
        writer.lookup(key)
        raw = valkey.Valkey(port=replica.port)
        for _ in range(500):  # wait until the replica holds the entry
            if raw.exists(writer.schema.entry(key)):
                break
            threading.Event().wait(0.02)
        assert raw.exists(writer.schema.entry(key))
        reader = AnswerCache(f"valkey://127.0.0.1:{replica.port}", prefix=prefix, namespace="lag")
        reader.health.retry_after = 0.0
        for _ in range(3):  # the first goes through the script (refused: READONLY), then over the line
            assert reader.lookup(key) is None
        assert reader._sync.direct()  # the later lookups were peeks, and a replica refused them too
    finally:
        replica.stop()
        primary.stop()


def test_a_group_missing_from_the_index_is_not_served_by_a_peek(
    cache: AnswerCache, standalone_url: str
) -> None:
    key = cache.key("qa", "unlisted")
    cached(cache, key, "v", ["kb/a.md"])
    assert cache.lookup(key) is not None and cache._sync.direct()
    raw = valkey.Valkey.from_url(standalone_url)
    raw.delete(cache.schema.groups)  # evicted, or deleted by hand
    other = AnswerCache(standalone_url, prefix=cache.schema.prefix, namespace="elsewhere")
    assert other.invalidate_source("kb/a.md") == 0  # it cannot find the unlisted group
    assert cache.lookup(key) is None  # the lookup lists the group again and retires what it held


def test_peeked_hits_and_misses_are_counted(cache: AnswerCache) -> None:
    key = cache.key("qa", "counted")
    cache.lookup(key)  # the first lookup runs the script (the line is made on first use)
    assert cache.store(key, "v", ["doc"])
    for _ in range(5):
        assert cache.lookup(key) is not None
    for i in range(3):
        assert cache.lookup(cache.key("qa", f"absent-{i}")) is None
    assert cache._sync.direct()
    counters = cache.stats()["namespaces"]["direct"]
    assert (counters["hits"], counters["misses"]) == (5, 4)


def test_an_idle_process_counts_reach_valkey_within_a_few_seconds(
    cache: AnswerCache, standalone_url: str
) -> None:
    import time

    key = cache.key("qa", "idle")
    cached(cache, key, "v", ["doc"])
    assert cache.lookup(key) is not None and cache._sync.direct()  # a peeked hit: counted later
    other = AnswerCache(
        standalone_url, prefix=cache.schema.prefix, namespace="direct"
    )  # another process's view
    deadline = time.monotonic() + 10
    while other.stats()["namespaces"].get("direct", {}).get("hits", 0) < 1:
        assert time.monotonic() < deadline, "the idle process's count never reached Valkey"
        time.sleep(0.1)


def test_the_switch_turns_lines_off(
    standalone_url: str, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("VALKEY_RAG_CACHE_DIRECT", "0")
    assert direct_line(valkey.Valkey.from_url(standalone_url)) is None
    cache = AnswerCache(standalone_url, prefix=prefix, namespace="switched")
    key = cache.key("qa", "off")
    cached(cache, key, "v", ["doc"])
    assert cache.lookup(key).value == "v"  # type: ignore[union-attr]  # through the client's pool
    assert not cache._sync.direct()


@pytest.mark.cluster
def test_a_cluster_hit_needs_no_script_and_counts_reach_each_group(cluster_url: str, prefix: str) -> None:
    cache = AnswerCache(cluster_url, prefix=prefix, namespace="tenant-a")
    keys = {ns: cache.key("qa", "q", namespace=ns) for ns in ("tenant-a", "tenant-b", "tenant-c")}
    for key in keys.values():  # three groups: three hash slots, on different nodes
        cached(cache, key, key.namespace, ["doc"])
    assert cache._sync.direct()
    nodes = cache.connector.sync_client().get_primaries()
    for node in nodes:
        cache.connector.sync_client().get_valkey_connection(node).config_resetstat()
    for _ in range(4):
        for ns, key in keys.items():
            assert cache.lookup(key).value == ns  # type: ignore[union-attr]
    scripts = sum(
        int(
            cache.connector.sync_client()
            .get_valkey_connection(n)
            .info("commandstats")
            .get("cmdstat_evalsha", {})
            .get("calls", 0)
        )
        for n in nodes
    )
    assert scripts == 0
    counters = cache.stats()["namespaces"]
    assert {ns: counters[ns]["hits"] for ns in keys} == {ns: 4 for ns in keys}


def test_an_entry_that_survived_an_invalidation_is_served_without_the_script_again(
    cache: AnswerCache, standalone_url: str
) -> None:
    kept, dropped = cache.key("qa", "kept"), cache.key("qa", "dropped")
    for key, source in ((kept, "kb/kept.md"), (dropped, "kb/dropped.md")):
        cached(cache, key, key.digest, [source])
    raw = valkey.Valkey.from_url(standalone_url)
    ttl = raw.ttl(cache.schema.entry(kept))
    assert cache.invalidate_source("kb/dropped.md") == 1  # the group's invalidation count moved on
    raw.config_resetstat()
    for _ in range(10):
        hit = cache.lookup(kept)
        assert hit is not None and hit.value == kept.digest
    calls = int(raw.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    assert calls == 1  # the first hit checked its tokens and stamped it anew; the others were peeks
    assert 0 < raw.ttl(cache.schema.entry(kept)) <= ttl  # its TTL kept
    assert cache.lookup(dropped) is None
    assert cache.invalidate_source("kb/kept.md") == 1
    assert cache.lookup(kept) is None  # the new stamp covers only what was current


def _child_counts(url: str, prefix: str, out: Any) -> None:
    cache = _SHARED[0]
    assert cache.lookup(cache.key("qa", "fork-count")) is not None  # the child's own hit
    cache.flush_counts()
    out.put(True)


def test_a_fork_counts_each_hit_once(cache: AnswerCache, standalone_url: str, prefix: str) -> None:
    key = cache.key("qa", "fork-count")
    cached(cache, key, "v", ["doc"])
    assert cache.lookup(key) is not None and cache._sync.direct()  # the parent's hit, pending
    _SHARED[:] = [cache, None]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_counts, args=(standalone_url, prefix, out))
    child.start()
    assert out.get(timeout=10)
    child.join(10)
    assert cache.stats()["namespaces"]["direct"]["hits"] == 2  # the parent's and the child's, once each


def test_a_cache_dropped_right_after_its_lookups_still_counts_them(standalone_url: str, prefix: str) -> None:
    import gc
    import time

    cache = AnswerCache(standalone_url, prefix=prefix, namespace="dropped")
    key = cache.key("qa", "gone")
    cached(cache, key, "v", ["doc"])
    for _ in range(3):
        assert cache.lookup(key) is not None
    del cache
    gc.collect()
    other = AnswerCache(standalone_url, prefix=prefix, namespace="dropped")
    deadline = time.monotonic() + 10
    while other.stats()["namespaces"].get("dropped", {}).get("hits", 0) < 3:
        assert time.monotonic() < deadline, "the dropped cache's counts never arrived"
        time.sleep(0.1)
