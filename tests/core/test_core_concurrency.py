"""Races between lookups, writes and invalidations, with threads and with asyncio tasks.

The property: once `invalidate_source` returns, no lookup returns an answer built on the document version
it retired — even for answers computed from the old version and written after the invalidation.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest

from valkey_rag_cache import AnswerCache

REAL = [
    pytest.param("standalone", marks=pytest.mark.standalone),
    pytest.param("cluster", marks=pytest.mark.cluster),
]
# asyncio races also over Valkey GLIDE clients, made in the test's own loop.
AREAL = [
    *REAL,
    pytest.param("glide", marks=[pytest.mark.standalone, pytest.mark.glide]),
    pytest.param("glide-cluster", marks=[pytest.mark.cluster, pytest.mark.glide]),
]


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_writes_that_an_invalidation_overtook_are_refused_threads(make_cache: Any) -> None:
    cache = make_cache(namespace="docs")
    key = cache.key("qa", "question")
    looked_up = threading.Barrier(9)
    invalidated = threading.Event()
    results: list[bool] = []

    def worker() -> None:
        assert cache.lookup(key) is None
        looked_up.wait()
        invalidated.wait()
        results.append(cache.store(key, "built on the old document", ["doc"]))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    looked_up.wait()
    cache.invalidate_source("doc")
    invalidated.set()
    for t in threads:
        t.join()
    assert results == [False] * 8
    assert cache.lookup(key) is None


class KnowledgeBase:
    """Documents with versions: an update bumps a version, invalidates, then publishes it as retired."""

    def __init__(self, n: int) -> None:
        self.version = dict.fromkeys(range(n), 0)
        self.retired_below = dict.fromkeys(range(n), 0)  # answers older than this must never be served
        self.lock = threading.Lock()


def _check(hit: Any, floor: dict[int, int]) -> None:
    for doc, version in hit.value["versions"].items():
        assert version >= floor[int(doc)], f"stale hit: doc {doc} v{version} < v{floor[int(doc)]}"


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_no_stale_hit_under_concurrent_updates_threads(make_cache: Any) -> None:
    kb = KnowledgeBase(4)
    caches = [make_cache(namespace=ns) for ns in ("docs:technical", "faqs")]
    stop = threading.Event()
    errors: list[BaseException] = []
    hits = [0]

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                cache = caches[rng.randrange(2)]
                q = rng.randrange(6)
                docs = [q % 4, (q + 1) % 4]
                key = cache.key("qa", q)
                floor = dict(kb.retired_below)
                hit = cache.lookup(key)
                if hit is not None:
                    hits[0] += 1
                    _check(hit, floor)
                    continue
                versions = {str(d): kb.version[d] for d in docs}  # "retrieval" after the miss
                cache.store(key, {"versions": versions}, [f"doc-{d}" for d in docs])
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)

    def updater() -> None:
        rng = random.Random(99)
        try:
            for _ in range(40):
                d = rng.randrange(4)
                with kb.lock:
                    kb.version[d] += 1
                    new = kb.version[d]
                caches[0].invalidate_source(f"doc-{d}")
                kb.retired_below[d] = new
                threading.Event().wait(0.005)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(6)] + [
        threading.Thread(target=updater)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert hits[0] > 0  # the workload did hit the cache


@pytest.mark.parametrize("backend", AREAL, indirect=True)
async def test_no_stale_hit_under_concurrent_updates_asyncio(amake_cache: Any) -> None:
    kb = KnowledgeBase(4)
    cache: AnswerCache = await amake_cache(namespace="docs:support")
    done = asyncio.Event()
    hits = 0

    async def reader(seed: int) -> None:
        try:
            await read(seed)
        finally:
            done.set()  # one failing reader stops the others, so the failure surfaces at once

    async def read(seed: int) -> None:
        nonlocal hits
        rng = random.Random(seed)
        while not done.is_set():
            q = rng.randrange(6)
            docs = [q % 4, (q + 2) % 4]
            key = cache.key("qa", q)
            floor = dict(kb.retired_below)
            hit = await cache.alookup(key)
            if hit is not None:
                hits += 1
                _check(hit, floor)
                await asyncio.sleep(0)
                continue
            versions = {str(d): kb.version[d] for d in docs}
            await asyncio.sleep(rng.random() * 0.003)  # the "model call"
            await cache.astore(key, {"versions": versions}, [f"doc-{d}" for d in docs])

    async def updater() -> None:
        rng = random.Random(7)
        try:
            for _ in range(40):
                if done.is_set():
                    return
                d = rng.randrange(4)
                kb.version[d] += 1
                new = kb.version[d]
                await cache.ainvalidate_source(f"doc-{d}")
                kb.retired_below[d] = new
                await asyncio.sleep(0.004)
        finally:
            done.set()

    await asyncio.gather(updater(), *(reader(i) for i in range(8)))
    assert hits > 0
