"""`close()` / `aclose()`: the cache lets go of its connections (counts sent first), stays usable, and never
closes a client it was given."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from typing import Any

import pytest
import valkey
import valkey.asyncio as avalkey

from langchain_valkey_cache import ValkeyCache
from llamaindex_valkey_cache import LlamaIndexCache
from valkey_rag_cache import AnswerCache

pytestmark = pytest.mark.standalone


def connections(admin: valkey.Valkey, name: str, settle: int | None = None) -> int:
    """Connections to the server whose client name is `name` (set by the cache's clients below).

    With `settle`, waits up to 2 s for that many: the server learns of a closed socket on its own next turn,
    so a `CLIENT LIST` sent right after the close can still list it (seen on a loaded machine).
    """
    deadline = time.monotonic() + (2.0 if settle is not None else 0.0)
    while True:
        n = sum(1 for c in admin.client_list() if c.get("name") == name)
        if n == settle or settle is None or time.monotonic() > deadline:
            return n
        time.sleep(0.01)


@pytest.fixture
def admin(standalone_url: str) -> valkey.Valkey:
    return valkey.Valkey.from_url(standalone_url)


def ids(admin: valkey.Valkey, name: str) -> set[str]:
    return {c["id"] for c in admin.client_list() if c.get("name") == name}


def test_close_disconnects_the_lines_and_the_client_it_made_never_under_another_threads_call(
    standalone_url: str, prefix: str, admin: valkey.Valkey
) -> None:
    cache = AnswerCache(f"{standalone_url}?client_name={prefix}", prefix=prefix, namespace="close")
    key = cache.key("qa", 1)
    assert cache.lookup(key) is None and cache.store(key, "v", ["doc"])
    first, second, done = threading.Barrier(4), threading.Barrier(4), threading.Event()

    def hits() -> None:  # a thread that keeps its line (a thread's line goes when the thread ends)
        assert cache.lookup(key) is not None
        first.wait()
        first.wait()  # the main thread closed the cache
        assert cache.lookup(key) is not None  # its old connection closed by itself, a new one made
        second.wait()
        done.wait()

    threads = [threading.Thread(target=hits) for _ in range(3)]
    for t in threads:
        t.start()
    first.wait()
    assert cache.connector.sync_client().ping()  # the client's pool holds a connection too
    before = ids(admin, prefix)
    assert len(before) >= 5  # this thread's line and three more, and the client's pool
    hits_before = cache.stats()["totals"]["hits"]
    assert cache.lookup(key) is not None  # a count left waiting: close sends it
    cache.close()
    assert len(ids(admin, prefix) & before) <= 3  # at most the other threads' (idle: freed with their line)
    first.wait()
    second.wait()
    gc.collect()  # the lines of the client let go, with their threads' connections
    after = ids(admin, prefix)
    assert len(after) == 3 and not after & before  # each thread's next call made a new connection
    done.set()
    for t in threads:
        t.join()
    assert cache.stats()["totals"]["hits"] >= hits_before + 1
    cache.close()
    gc.collect()
    assert ids(admin, prefix) == set()  # an ended thread's line went with it
    assert cache.lookup(key).value == "v"  # type: ignore[union-attr]  # usable again: it reconnects
    with cache:
        assert cache.lookup(key) is not None
    assert ids(admin, prefix) == set()


def test_close_while_threads_make_calls_raises_nothing_and_is_no_outage(
    standalone_url: str, prefix: str
) -> None:
    cache = AnswerCache(standalone_url, prefix=prefix, namespace="close")
    keys = [cache.key("qa", i) for i in range(20)]
    for k in keys:
        cache.lookup(k)
        cache.store(k, "v", ["doc"])
    errors: list[BaseException] = []
    stop = threading.Event()

    def calls() -> None:
        while not stop.is_set():
            try:
                for k in keys:
                    if cache.lookup(k) is None:
                        cache.store(k, "v", ["doc"])
            except BaseException as exc:  # noqa: BLE001  # what would reach the user's call
                errors.append(exc)

    threads = [threading.Thread(target=calls) for _ in range(6)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for t in threads:
            t.start()
        for _ in range(30):
            time.sleep(0.02)
            cache.close()
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(interval)
    assert errors == []
    assert cache.health.snapshot()["outages"] == 0  # no call saw the server as down


def test_close_leaves_a_given_client_open(standalone_url: str, prefix: str, admin: valkey.Valkey) -> None:
    client = valkey.Valkey.from_url(f"{standalone_url}?client_name={prefix}")
    assert client.ping()  # its pool holds a connection (the cache's own calls may all go over its line)
    with AnswerCache(client=client, prefix=prefix, namespace="close") as cache:
        key = cache.key("qa", 1)
        assert cache.lookup(key) is None and cache.store(key, "v")
    # Its pool's connection stays (the caller's); the line is gone.
    assert connections(admin, prefix, settle=1) == 1


async def test_aclose_closes_the_loops_line_and_client_and_leaves_no_task(
    standalone_url: str, prefix: str, admin: valkey.Valkey
) -> None:
    cache = AnswerCache(f"{standalone_url}?client_name={prefix}", prefix=prefix, namespace="close")
    key = cache.key("qa", 1)
    assert await cache.alookup(key) is None and await cache.astore(key, "v", ["doc"])
    assert await cache.alookup(key) is not None
    assert connections(admin, prefix) >= 1
    async with cache:
        assert await cache.alookup(key) is not None
    assert connections(admin, prefix, settle=0) == 0
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []  # no reader left
    assert (await cache.alookup(key)).value == "v"  # type: ignore[union-attr]  # and usable again
    await cache.aclose()


async def test_aclose_leaves_a_given_asyncio_client_open(standalone_url: str, prefix: str) -> None:
    client = avalkey.Valkey.from_url(standalone_url)
    cache = AnswerCache(client=client, prefix=prefix, namespace="close")
    key = cache.key("qa", 1)
    assert await cache.alookup(key) is None and await cache.astore(key, "v")
    await cache.aclose()
    assert await client.ping()
    assert (await cache.alookup(key)).value == "v"  # type: ignore[union-attr]
    await cache.aclose()
    await client.aclose()


@pytest.mark.parametrize("adapter", [ValkeyCache, LlamaIndexCache])
def test_the_adapters_close_their_core(
    standalone_url: str, prefix: str, admin: valkey.Valkey, adapter: Any
) -> None:
    with adapter(f"{standalone_url}?client_name={prefix}", prefix=prefix, namespace="close") as cache:
        key = cache.core.key("qa", 1)
        assert cache.core.lookup(key) is None
        assert connections(admin, prefix) >= 1
    assert connections(admin, prefix, settle=0) == 0
