"""Memory: bytes per cached answer and per (answer, source) link, from `INFO memory` deltas.

Each variant fills `n` entries into an empty database of a quiet server and reads `used_memory` before and
after; the per-link figure is the difference between the same answers stored with 5 sources and with none,
divided by the number of links. Nothing else runs meanwhile (the harness is one process, one phase at a time).

Example:
    >>> measure(env, n=100_000)  # doctest: +SKIP
    {'mem.payload': 1459.0, 'mem.core0': 1710.3, ...}
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
# Knowledge bases of 10,000 documents (50 answers per document: small sets) and of 1,000 (500 per document:
# sets past the listpack size, stored as hash tables).
LINK_POOLS = (10_000, 1_000)


def _used(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def _settle(client: Any) -> int:
    # SYNC: Valkey 8 frees a flushed database in the background by default, which would skew the reading.
    client.execute_command("FLUSHDB", "SYNC")
    time.sleep(0.05)
    return _used(client)


def _delta(client: Any, load: Any) -> int:
    before = _settle(client)
    load()
    after = _used(client)
    _settle(client)
    return after - before


def measure(env: Env, n: int, batch: int = 2000) -> dict[str, float]:
    url = env.url.rstrip("/") + f"/{MEMORY_DB}"
    client = valkey.Valkey.from_url(url)
    value = message_value()
    rng = random.Random(11)
    out: dict[str, float] = {"mem.payload": float(len(json.dumps(value, separators=(",", ":")))),
                             "mem.entry_size": float(len(env.payload)), "mem.n": float(n)}

    def raw() -> None:
        for start in range(0, n, batch):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(n, start + batch)):
                pipe.set(f"bench:raw:mem:{i}", env.payload, ex=21600)
            pipe.execute()

    def ours(sources: int, pool: int) -> Any:
        def load() -> None:
            cache = AnswerCache(url, prefix="mem", namespace="kb:support", timeout=TIMEOUT)
            items = (
                (cache.key("qa", {"q": i}), value, source_ids(rng, sources, pool) if sources else [])
                for i in range(n)
            )
            fill(cache, client, items, batch)

        return load

    def redis_cache() -> None:
        from langchain_community.cache import RedisCache

        gen = [chat_generation()]
        for start in range(0, n, batch):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(n, start + batch)):
                # RedisCache's own write path (HSET of dumps(generation), then EXPIRE), batched.
                RedisCache._configure_pipeline_for_update(
                    RedisCache._key(prompt("mem", i), LLM_STRING), pipe, gen, 21600
                )
            pipe.execute()

    def recipe(sources: int) -> Any:
        def load() -> None:
            r = RecipeCache(client, prefix="mem:recipe")
            for start in range(0, n, batch):
                pipe = client.pipeline(transaction=False)
                for i in range(start, min(n, start + batch)):
                    r.store("kb:support", f"q-{i}", value, source_ids(rng, sources, LINK_POOLS[0]), pipe=pipe)
                pipe.execute()

        return load

    out["mem.raw"] = _delta(client, raw) / n
    out["mem.core0"] = _delta(client, ours(0, 1)) / n
    for pool in LINK_POOLS:
        out[f"mem.core5.pool{pool}"] = _delta(client, ours(5, pool)) / n
        out[f"mem.link.pool{pool}"] = (out[f"mem.core5.pool{pool}"] - out["mem.core0"]) / 5
    out["mem.redis_cache"] = _delta(client, redis_cache) / n
    out["mem.recipe0"] = _delta(client, recipe(0)) / n
    out["mem.recipe5"] = _delta(client, recipe(5)) / n
    out["mem.recipe_link"] = (out["mem.recipe5"] - out["mem.recipe0"]) / 5
    client.close()
    return out
