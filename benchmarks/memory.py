"""Memory: bytes per cached answer and per (answer, source) link, from `INFO memory` deltas.

Each variant fills `n` entries into an empty database of a quiet server and reads `used_memory` before and
after. For the links, the same answers are stored with 5 sources and with none; the difference per link is
split into what the dependency bookkeeping costs (the per-source sets and tokens, measured by deleting them
and reading `used_memory` again, plus the token lines of the entry header, in bytes) and the source ids the
answer itself carries back to the caller (`Hit.sources`, part of the value).

Example:
    >>> measure(env, n=100_000)  # doctest: +SKIP
    {'mem.payload': 1411.0, 'mem.core0': 1666.8, ...}
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import valkey
from bulk import fill
from latency import TIMEOUT, Env, prompt
from payloads import LLM_STRING, chat_generation, message_value, source_ids
from recipe import RecipeCache

from valkey_rag_cache import AnswerCache

__all__ = ["measure", "MEMORY_DB", "LINK_POOLS"]

MEMORY_DB = 5
# Knowledge bases of 10,000 documents (~50 answers per document: small sets, stored as listpacks) and of
# 1,000 (~500 per document: sets past the listpack limit, stored as hash tables).
LINK_POOLS = (10_000, 1_000)
SOURCES = 5
# The second knowledge base again with sets kept as listpacks up to 1,024 members: a server setting an
# operator may choose (membership checks in a listpack are linear), measured so the trade can be weighed.
LISTPACK_SETTING, LISTPACK_TUNED = "set-max-listpack-entries", "1024"


def _used(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def _flush(client: Any) -> None:
    # SYNC: Valkey 8 frees a flushed database in the background by default, which would skew the reading.
    client.execute_command("FLUSHDB", "SYNC")
    time.sleep(0.05)


def _delta(client: Any, load: Any, keep: bool = False) -> int:
    _flush(client)
    before = _used(client)
    load()
    after = _used(client)
    if not keep:
        _flush(client)
    return after - before


def _unlink_matching(client: Any, pattern: str) -> int:
    n = 0
    for batch in _scan(client, pattern):
        n += client.delete(*batch)
    return n


def _scan(client: Any, pattern: str) -> Any:
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, match=pattern, count=5000)
        if keys:
            yield keys
        if int(cursor) == 0:
            return


def measure(env: Env, n: int, batch: int = 2000) -> dict[str, float]:
    url = env.url.rstrip("/") + f"/{MEMORY_DB}"
    client: Any = valkey.Valkey.from_url(url)
    value = message_value()
    rng = random.Random(11)
    out: dict[str, float] = {
        "mem.payload": float(len(json.dumps(value, separators=(",", ":")))),
        "mem.n": float(n),
    }

    def cache() -> AnswerCache:
        return AnswerCache(url, prefix="mem", namespace="kb:support", timeout=TIMEOUT)

    def ours(sources: int, pool: int) -> Any:
        def load() -> None:
            c = cache()
            ids = (source_ids(rng, sources, pool) if sources else [] for _ in range(n))
            fill(c, client, ((c.key("qa", {"q": i}), value, next(ids)) for i in range(n)), batch)

        return load

    # Our answer with no sources: its stored bytes are also what the raw floor stores, key for key.
    out["mem.core0"] = _delta(client, ours(0, 1), keep=True) / n
    probe = cache()
    entry0 = client.get(probe.schema.entry(probe.key("qa", {"q": 0})))
    assert entry0, "the fill stored nothing"
    out["mem.entry_size"] = float(len(entry0))
    _flush(client)

    def raw() -> None:
        for start in range(0, n, batch):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(n, start + batch)):
                pipe.set(probe.schema.entry(probe.key("qa", {"q": i})), entry0, ex=21600)
            pipe.execute()

    out["mem.raw"] = _delta(client, raw) / n

    def links(pool: int, suffix: str = "") -> None:
        total = _delta(client, ours(SOURCES, pool), keep=True)
        entry5 = client.get(probe.schema.entry(probe.key("qa", {"q": 0})))
        before = _used(client)
        # The bookkeeping that exists only for sources: per-source dependency sets and tokens.
        _unlink_matching(client, "mem:{*}:d:*")
        _unlink_matching(client, "mem:{*}:t:s:*")
        index = before - _used(client)
        _flush(client)
        count = n * SOURCES
        head0, head5 = entry0.index(b"\n\n"), entry5.index(b"\n\n")
        body_ids = (len(entry5) - head5) - (len(entry0) - head0)  # the ids in the value (Hit.sources)
        tag = f"pool{pool}{suffix}"
        out[f"mem.core5.{tag}"] = total / n
        out[f"mem.link.{tag}"] = (total / n - out["mem.core0"]) / SOURCES
        out[f"mem.index.{tag}"] = index / count
        out[f"mem.header.{tag}"] = (head5 - head0) / SOURCES
        out[f"mem.bookkeeping.{tag}"] = index / count + (head5 - head0) / SOURCES
        out[f"mem.ids.{tag}"] = body_ids / SOURCES

    for pool in LINK_POOLS:
        links(pool)
    saved = client.config_get(LISTPACK_SETTING)[LISTPACK_SETTING]
    try:
        client.config_set(LISTPACK_SETTING, LISTPACK_TUNED)
        links(LINK_POOLS[-1], f".lp{LISTPACK_TUNED}")
    finally:
        client.config_set(LISTPACK_SETTING, saved)

    def redis_cache() -> None:
        from langchain_community.cache import RedisCache
        from langchain_core.load import dumps

        stored = dumps(chat_generation())  # what RedisCache.update() writes per generation (index "0")
        for start in range(0, n, batch):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(n, start + batch)):
                key = RedisCache._key(prompt("mem", i), LLM_STRING)
                pipe.hset(key, mapping={"0": stored})
                pipe.expire(key, 21600)
            pipe.execute()

    def recipe(sources: int) -> Any:
        def load() -> None:
            r = RecipeCache(client, prefix="mem:recipe")
            for start in range(0, n, batch):
                pipe = client.pipeline(transaction=False)
                for i in range(start, min(n, start + batch)):
                    ids = source_ids(rng, sources, LINK_POOLS[0]) if sources else []
                    r.store("kb:support", f"q-{i}", value, ids, pipe=pipe)
                pipe.execute()

        return load

    out["mem.redis_cache"] = _delta(client, redis_cache) / n
    out["mem.recipe0"] = _delta(client, recipe(0)) / n
    out["mem.recipe5"] = _delta(client, recipe(SOURCES)) / n
    out["mem.recipe_link"] = (out["mem.recipe5"] - out["mem.recipe0"]) / SOURCES
    client.close()
    return out
