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
    assert last_command[line_addr] == "evalsha"
    pool = cache.connector.sync_client().connection_pool
    for pooled in pool._available_connections:
        assert last_command[addr(pooled)] != "evalsha"


def test_a_killed_line_falls_back_to_the_normal_path_and_serves_the_hit(
    cache: AnswerCache, standalone_url: str
) -> None:
    key = cache.key("qa", "killed")
    cache.lookup(key)
    assert cache.store(key, "v", ["doc"])
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
        cache.lookup(key)
        assert cache.store(key, f"v{i}", ["doc"])
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
    cache.lookup(key)
    assert cache.store(key, "v", ["doc"])
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
