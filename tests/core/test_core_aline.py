"""The asyncio line (`aline.py`): one connection per client shared by its coroutines, replies in order.

Real standalone Valkey only: fakeredis and cluster clients never get a line (they keep the normal path).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import threading
import time
from typing import Any

import pytest
import valkey
import valkey.asyncio as avalkey

from valkey_rag_cache import AnswerCache
from valkey_rag_cache.aline import AsyncLine, async_line

pytestmark = pytest.mark.standalone


@pytest.fixture
def cache(standalone_url: str, prefix: str) -> AnswerCache:
    return AnswerCache(standalone_url, prefix=prefix, namespace="aline", timeout=2)


async def cached(cache: AnswerCache, n: int, tag: str = "") -> list[Any]:
    """`n` answers stored as an app stores them (a miss, then the write checked against it)."""
    keys = [cache.key("qa", {"q": i, "tag": tag}) for i in range(n)]
    for i, key in enumerate(keys):
        assert await cache.alookup(key) is None
        assert await cache.astore(key, {"answer": i}, [f"doc-{i % 5}"])
    return keys


def line_of(cache: AnswerCache) -> AsyncLine:
    line = cache._async._lines[asyncio.get_running_loop()][1]
    assert line is not None, "a plain standalone asyncio client gets a line"
    return line


def calls(admin: valkey.Valkey) -> dict[str, int]:
    return {name: stat["calls"] for name, stat in admin.info("commandstats").items()}


async def test_concurrent_hits_share_one_connection_and_each_gets_its_own_answer(
    cache: AnswerCache, standalone_url: str
) -> None:
    keys = await cached(cache, 50)
    admin = valkey.Valkey.from_url(standalone_url)
    admin.config_resetstat()

    async def one(i: int) -> None:
        hit = await cache.alookup(keys[i % 50])
        assert hit is not None and hit.value == {"answer": i % 50}

    await asyncio.gather(*(one(i) for i in range(2000)))
    seen = calls(admin)
    assert "cmdstat_evalsha" not in seen  # a hit needs no script over the line either
    assert seen["cmdstat_get"] == 2000
    pool = cache.connector._async[asyncio.get_running_loop()].connection_pool
    # The pool made at most one connection (the scripts' load), however many coroutines ran at once.
    assert len(pool._in_use_connections) + len(pool._available_connections) <= 1


async def test_requests_made_while_replies_are_awaited_go_out_in_one_write(cache: AnswerCache) -> None:
    # 64 tasks started together: the first request is written at once (nothing in flight), the other 63,
    # made in the same turn of the event loop while its reply is awaited, together in one write (one
    # system call and one wake-up of the server instead of 63); each still gets its own answer.
    keys = await cached(cache, 64, "one-write")
    link = line_of(cache)._link
    assert link is not None
    writes: list[bytes] = []
    write = link.writer.write

    def counted(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)

    link.writer.write = counted  # type: ignore[method-assign]
    try:
        hits = await asyncio.gather(*(cache.alookup(key) for key in keys))
    finally:
        del link.writer.write  # the instance's own attribute: the class's method again
    assert [h.value if h is not None else None for h in hits] == [{"answer": i} for i in range(64)]
    # The lookups' requests in two writes (the hits' counts, posted as their replies are read, go in
    # others, one per batch of replies); one write per request would be 64.
    with_keys = [w for w in writes if any(key.digest.encode() in w for key in keys)]
    assert len(with_keys) == 2, [len(w) for w in writes]
    assert all(any(key.digest.encode() in w for w in with_keys) for key in keys)


async def test_hits_and_misses_are_counted_as_they_happen(cache: AnswerCache) -> None:
    keys = await cached(cache, 3)
    before = (await cache.astats())["totals"]
    for key in keys:
        assert await cache.alookup(key) is not None
    assert await cache.alookup(cache.key("qa", "never stored")) is None
    await asyncio.sleep(0.05)
    assert not cache._tally  # nothing left for a flush to send: the line carried each count
    after = (await cache.astats())["totals"]
    assert (after["hits"] - before["hits"], after["misses"] - before["misses"]) == (3, 1)


async def test_a_cancelled_lookup_leaves_the_line_in_step(cache: AnswerCache) -> None:
    keys = await cached(cache, 20)

    async def one(i: int) -> Any:
        hit = await cache.alookup(keys[i % 20])
        assert hit is not None and hit.value == {"answer": i % 20}
        return hit

    tasks = [asyncio.ensure_future(one(i)) for i in range(300)]
    await asyncio.sleep(0)  # every request written, none answered yet
    for task in tasks[::3]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 100
    assert not [r for r in results if isinstance(r, Exception)]
    # Every later request still gets its own replies.
    await asyncio.gather(*(one(i) for i in range(300)))


async def test_a_killed_connection_fails_over_to_the_normal_path_then_reconnects(
    cache: AnswerCache, standalone_url: str
) -> None:
    keys = await cached(cache, 10)
    line = line_of(cache)
    first = line._link
    assert first is not None and first.alive
    admin = valkey.Valkey.from_url(standalone_url)
    admin.client_kill_filter(_id=await line.execute_command("CLIENT", "ID"))
    hits = await asyncio.gather(*(cache.alookup(keys[i % 10]) for i in range(100)))
    assert all(h is not None for h in hits)  # each request waiting on the dead connection went round it
    assert cache.health.snapshot()["errors"] == 0
    assert await cache.alookup(keys[0]) is not None
    assert line._link is not first and line._link is not None and line._link.alive


async def test_a_server_that_stops_answering_times_out_as_a_miss_then_serves_again(
    standalone_url: str, prefix: str
) -> None:
    cache = AnswerCache(standalone_url, prefix=prefix, namespace="aline-pause", timeout=0.3)
    cache.health.retry_after = 0.0
    keys = await cached(cache, 5)
    first = line_of(cache)._link
    admin = valkey.Valkey.from_url(standalone_url)
    admin.client_pause(10_000, all=False)  # writes held (every lookup carries one) until unpaused below
    try:
        started = asyncio.get_running_loop().time()
        hits = await asyncio.gather(*(cache.alookup(k) for k in keys))
        assert hits == [None] * 5  # timed out: misses, never an exception
        assert asyncio.get_running_loop().time() - started < 8  # (not the pause's end: the 0.3 s timeout)
    finally:
        admin.client_unpause()
    hit = await cache.alookup(keys[0])
    assert hit is not None and hit.value == {"answer": 0}
    assert line_of(cache)._link is not first  # the connection that stopped answering was dropped


async def test_writes_go_over_the_line_also_after_the_server_lost_its_scripts(
    cache: AnswerCache, standalone_url: str
) -> None:
    keys = await cached(cache, 2)
    line_id = str(await line_of(cache).execute_command("CLIENT", "ID"))
    admin = valkey.Valkey.from_url(standalone_url)
    admin.script_flush()  # NOSCRIPT on the next write: loaded, then sent again
    key = cache.key("qa", "after a flush of the scripts")
    assert await cache.alookup(key) is None
    assert await cache.astore(key, "v", ["doc"])
    last = {c["id"]: c["cmd"] for c in admin.client_list()}
    assert last[line_id] == "evalsha"  # the write, after its script was loaded again
    hit = await cache.alookup(key)
    assert hit is not None and hit.value == "v"
    assert (await cache.alookup(keys[0])) is not None


async def test_an_invalidation_is_seen_by_the_next_lookup_over_the_line(cache: AnswerCache) -> None:
    keys = await cached(cache, 10)
    await cache.ainvalidate_source("doc-1")
    found = [await cache.alookup(k) for k in keys]
    assert [i for i, hit in enumerate(found) if hit is None] == [1, 6]


def test_only_plain_standalone_asyncio_clients_get_a_line(
    standalone_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(async_line(avalkey.Valkey.from_url(standalone_url)), AsyncLine)
    assert async_line(avalkey.Valkey.from_url(standalone_url, decode_responses=True)) is None
    assert async_line(avalkey.Valkey.from_url(standalone_url, protocol=3)) is None
    assert async_line(valkey.Valkey.from_url(standalone_url)) is None  # a sync client
    monkeypatch.setenv("VALKEY_RAG_CACHE_DIRECT", "0")
    assert async_line(avalkey.Valkey.from_url(standalone_url)) is None


async def test_a_lookup_on_a_replica_is_a_miss_not_a_copy_that_may_lag(prefix: str) -> None:
    from servers import start_standalone

    primary = start_standalone(repl_diskless_sync_delay="0")
    replica = start_standalone(replicaof=f"127.0.0.1 {primary.port}")
    try:
        writer = AnswerCache(f"valkey://127.0.0.1:{primary.port}", prefix=prefix, namespace="lag")
        keys = await cached(writer, 1)
        raw = valkey.Valkey(port=replica.port)
        for _ in range(500):  # wait until the replica holds the entry
            if raw.exists(writer.schema.entry(keys[0])):
                break
            await asyncio.sleep(0.02)
        assert raw.exists(writer.schema.entry(keys[0]))
        reader = AnswerCache(f"valkey://127.0.0.1:{replica.port}", prefix=prefix, namespace="lag")
        reader.health.retry_after = 0.0
        for _ in range(3):  # the first goes through the script (refused: READONLY), then over the line
            assert await reader.alookup(keys[0]) is None
        assert reader._async.direct()  # the later lookups were peeks, and the replica refused them too
    finally:
        replica.stop()
        primary.stop()


def test_event_loops_in_threads_at_once_keep_one_connection_each(cache: AnswerCache) -> None:
    seen: dict[str, set[int]] = {}
    ready = threading.Barrier(2)

    async def lookups(tag: str) -> None:
        keys = await cached(cache, 2, tag)
        ready.wait(timeout=10)  # both loops from here on, interleaved
        links = seen.setdefault(tag, set())
        for i in range(200):
            assert await cache.alookup(keys[i % 2]) is not None
            links.add(id(line_of(cache)._link))
            await asyncio.sleep(0)
            threading.Event().wait(0.0005)  # let the other thread's loop run in between

    threads = [threading.Thread(target=lambda t=t: asyncio.run(lookups(t))) for t in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {tag: len(links) for tag, links in seen.items()} == {"a": 1, "b": 1}


@contextlib.contextmanager
def frozen_server() -> Any:
    """A server of its own, stopped (SIGSTOP) inside the block: it accepts bytes until its buffers fill, and
    answers nothing, like a host that froze."""
    from servers import start_standalone

    server = start_standalone()
    stopped = [False]

    def freeze() -> None:
        os.kill(server.proc.pid, signal.SIGSTOP)
        stopped[0] = True

    try:
        yield server, freeze
    finally:
        if stopped[0]:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


async def test_a_write_stuck_behind_a_full_buffer_times_out_with_the_lookups_behind_it(prefix: str) -> None:
    with frozen_server() as (server, freeze):
        cache = AnswerCache(
            f"valkey://127.0.0.1:{server.port}", prefix=prefix, namespace="drain", timeout=0.3
        )
        cache.health.retry_after = 0.0
        keys = await cached(cache, 2)
        big = cache.key("qa", "a large answer")
        assert await cache.alookup(big) is None
        freeze()
        both = asyncio.gather(
            cache.astore(big, "x" * (8 << 20), ["doc"]),  # more than the socket buffers hold: a drain waits
            cache.alookup(keys[0]),  # written behind it
        )
        # Frozen until the test ends: without the 0.3 s timeout both would wait forever (wait_for makes that a
        # failure rather than a hang).
        stored, hit = await asyncio.wait_for(both, 5)
        assert (stored, hit) == (False, None)  # a dropped write and a miss


async def test_a_frozen_server_makes_concurrent_lookups_misses_without_a_queue_of_reconnects(
    prefix: str,
) -> None:
    with frozen_server() as (server, freeze):
        cache = AnswerCache(
            f"valkey://127.0.0.1:{server.port}", prefix=prefix, namespace="stall", timeout=0.3
        )
        cache.health.retry_after = 0.0
        keys = await cached(cache, 4)
        freeze()
        assert await cache.alookup(keys[0]) is None  # times out: the connection goes

        loop = asyncio.get_running_loop()

        async def timed(key: Any) -> float:
            started = loop.time()
            assert await cache.alookup(key) is None
            return loop.time() - started

        waited = await asyncio.gather(*(timed(keys[i % 4]) for i in range(32)))
        # One coroutine reconnects; the others take the normal path meanwhile (one queue of connects, each up
        # to the 0.3 s timeout, makes the last wait ~32 timeouts: ~10 s).
        assert max(waited) < 5


async def test_an_asyncio_only_cache_keeps_counts_it_could_not_post_until_it_can_send_them(
    standalone_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = AnswerCache(client=avalkey.Valkey.from_url(standalone_url), prefix=prefix, namespace="async-only")
    keys = await cached(cache, 1)
    before = (await cache.astats())["totals"]["hits"]
    monkeypatch.setattr(cache._async, "post", lambda calls: False)  # no live connection to post on
    assert await cache.alookup(keys[0]) is not None
    # The flush thread runs within a second; with no sync client it must leave the count for the async side
    # (taking it would lose it: it cannot send it).
    await asyncio.sleep(1.5)
    assert (await cache.astats())["totals"]["hits"] - before == 1


@pytest.mark.parametrize("ends", ["asyncio.run", "loop.close"])
def test_finished_event_loops_are_let_go_and_nothing_raises_in_a_finalizer(
    standalone_url: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    ends: str,
) -> None:
    # An app that runs each request in `asyncio.run` (or a loop it closes itself, its tasks still pending):
    # each loop's client and line go once the loop closed (they held it alive: ~25 KB a loop), and letting
    # them go schedules nothing on the closed loop (which raised inside finalizers), nor does the cache's end.
    raised: list[Any] = []
    monkeypatch.setattr("sys.unraisablehook", raised.append)
    cache = AnswerCache(standalone_url, prefix=prefix, namespace="aline", timeout=2)
    key = cache.key("qa", "loops")

    async def request(cache: AnswerCache = cache) -> None:  # (a default: the cache goes when this does)
        if await cache.alookup(key) is None:
            assert await cache.astore(key, "answer", ["doc"])

    for _ in range(12):
        if ends == "asyncio.run":
            asyncio.run(request())
        else:
            loop = asyncio.new_event_loop()
            loop.run_until_complete(request())
            loop.close()  # the line's reader still pending: nothing cancelled it
    gc.collect()
    assert len(cache.connector._async) == 1 and len(cache._async._lines) == 1  # the last loop's only
    del cache, request
    gc.collect()  # the last loop's line and reader go with the cache
    assert raised == []
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]


def test_event_loops_of_many_threads_come_and_go_without_an_error(standalone_url: str, prefix: str) -> None:
    # Threads each running requests in `asyncio.run`: their loops' entries are added and let go in maps
    # every thread shares (unlocked, two threads popped the same closed loop: KeyError; or one walked the
    # map while another added to it: RuntimeError, into the user's call). Thread switches are forced often.
    cache = AnswerCache(standalone_url, prefix=prefix, namespace="aline", timeout=2)
    key = cache.key("qa", "threads")
    errors: list[BaseException] = []

    async def request() -> None:
        if await cache.alookup(key) is None:
            await cache.astore(key, "answer", ["doc"])

    def worker() -> None:
        for _ in range(100):
            try:
                asyncio.run(request())
            except BaseException as exc:  # noqa: BLE001  # what reached the caller
                errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []


def test_a_loop_closed_while_a_request_waits_lets_it_go_without_raising(
    standalone_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The request's coroutine is finalized once its closed loop is let go: it must not cancel its future
    # on that loop (RuntimeError in a finalizer).
    raised: list[Any] = []
    monkeypatch.setattr("sys.unraisablehook", raised.append)
    cache = AnswerCache(standalone_url, prefix=prefix, namespace="aline", timeout=2)
    key = cache.key("qa", "waiting")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(cache.alookup(key))  # the line is up on this loop
    valkey.Valkey.from_url(standalone_url).client_pause(400, all=True)
    task = loop.create_task(cache.alookup(key))
    loop.run_until_complete(asyncio.sleep(0.1))  # written, waiting for its reply
    assert not task.done()
    loop.close()
    del task, loop
    gc.collect()
    time.sleep(0.5)  # the pause ends
    asyncio.run(cache.alookup(key))  # another loop: the closed one's client and line are let go
    gc.collect()
    assert raised == []
