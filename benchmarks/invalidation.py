"""Invalidation at scale: by source (1 to 10,000 dependents) and by namespace / version (1k to 1M entries).

Each size lives in its own database of the one server, so a SCAN (the recipe's) walks exactly the keys of
its own size. Ours invalidates a namespace or the version by replacing a token: entries stay until their TTL
or `purge()`, which is the point (O(1) whatever the size); the recipe deletes them (SCAN + DELETE), so its
data is refilled (untimed) before every measurement, and its million-entry run is done once.

The namespace fills hold answers without sources (what is measured never reads them). Ours are clones of one
real entry: `store()` writes the first, and the others get its exact header (era, invalidation count and
tokens, which all answers of a namespace without sources share) with their own keys and bodies, pipelined,
so a million of them take seconds instead of minutes; the recipe's are written by a small server-side loop.

Example:
    >>> by_source(env, dependents=(1, 100, 10_000), rounds=5)  # doctest: +SKIP
    {'inv.src1.core': [...], 'inv.src1.recipe': [...], ...}
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import valkey
from bulk import fill
from latency import TIMEOUT, Env
from payloads import small_value, source_ids
from recipe import RecipeCache

from valkey_rag_cache import AnswerCache
from valkey_rag_cache.envelope import encode_body

__all__ = ["by_source", "at_scale", "DBS"]

# Databases of the one server: source invalidation, ours at the small and big size, the recipe at both.
DBS = {"source": 6, "small": 1, "big": 2, "recipe_small": 3, "recipe_big": 4}
NAMESPACE = "kb:docs"


def _db(env: Env, name: str) -> str:
    return env.url.rstrip("/") + f"/{DBS[name]}"


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter_ns()
    result = fn()
    return (time.perf_counter_ns() - t0) / 1e9, result


def by_source(env: Env, dependents: tuple[int, ...], rounds: int, most: int = 20) -> dict[str, list[float]]:
    """Seconds per `invalidate_source` (ours) and SMEMBERS+DELETE (the recipe), per round, per size."""
    url = _db(env, "source")
    client: Any = valkey.Valkey.from_url(url)
    client.flushdb()
    cache = AnswerCache(url, prefix="inv", namespace="kb:support", timeout=TIMEOUT)
    recipe = RecipeCache(client, prefix="inv:recipe")
    rng = random.Random(5)
    out: dict[str, list[float]] = {f"inv.src{d}.{who}": [] for d in dependents for who in ("core", "recipe")}
    for r in range(rounds):
        shift = r % len(dependents)
        for d in [*dependents[shift:], *dependents[:shift]]:
            per_round = max(1, min(most, 2000 // d))  # several small invalidations per round, one large one
            hot = [f"kb/hot/r{r}-d{d}-s{s}.md" for s in range(per_round)]
            items = [
                (
                    cache.key("qa", {"r": r, "d": d, "s": s, "j": j}),
                    small_value(j),
                    [hot[s], *source_ids(rng, 4)],
                )
                for s in range(per_round)
                for j in range(d)
            ]
            fill(cache, client, items)
            pipe = client.pipeline(transaction=False)
            for s in range(per_round):
                for j in range(d):
                    ids = [hot[s], *source_ids(rng, 4)]
                    recipe.store("kb:support", f"r{r}-d{d}-s{s}-j{j}", small_value(j), ids, pipe)
            pipe.execute()
            ours, theirs = [], []
            for source in hot:
                seconds, n = _timed(partial(cache.invalidate_source, source))
                assert n == d, f"invalidate_source removed {n} entries, expected {d}"
                ours.append(seconds)
                seconds, n = _timed(partial(recipe.invalidate_source, source))
                assert n == d, f"the recipe removed {n} entries, expected {d}"
                theirs.append(seconds)
            out[f"inv.src{d}.core"].append(statistics.median(ours))
            out[f"inv.src{d}.recipe"].append(statistics.median(theirs))
    client.flushdb()
    client.close()
    return out


# What RecipeCache.store(NAMESPACE, f"q-{i}", small_value(i), []) writes, looped on the server.
_RECIPE_LOADER = """
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  local k = ARGV[1] .. 'q-' .. i
  redis.call('HSET', k, 'response', string.format(ARGV[4], i, i), 'sources', '[]', 'at', ARGV[5])
  redis.call('EXPIRE', k, ARGV[6])
end
return 1
"""


def _fill_recipe(client: Any, size: int, batch: int = 20_000) -> None:
    recipe = RecipeCache(client, prefix="big:recipe")
    template = json.dumps(small_value(0)).replace("number 0", "number %d").replace('"n": 0', '"n": %d')
    assert template % (7, 7) == json.dumps(small_value(7))
    loader = client.register_script(_RECIPE_LOADER)
    for start in range(0, size, batch):
        end = min(size, start + batch) - 1
        loader(args=[recipe.entry_key(NAMESPACE, ""), start, end, template, time.time(), recipe.ttl])


def _fill_ours(cache: AnswerCache, client: Any, size: int, batch: int = 5000) -> None:
    first = cache.key("qa", {"q": 0})
    assert cache.store(first, small_value(0)), "the first entry was not stored"
    entry = client.get(cache.schema.entry(first))
    header, ttl = entry[: entry.index(b"\n\n") + 2], client.ttl(cache.schema.entry(first))
    content_type = cache.policy.default_content_type
    for start in range(1, size, batch):
        pipe = client.pipeline(transaction=False)
        now = time.time()
        for i in range(start, min(size, start + batch)):
            body = encode_body(small_value(i), (), content_type, now)
            pipe.set(cache.schema.entry(cache.key("qa", {"q": i})), header + body, ex=ttl)
        pipe.execute()


def at_scale(env: Env, small: int, big: int, rounds: int, ops: int) -> dict[str, list[float]]:
    """Seconds per namespace / version invalidation with `small` and `big` entries in the cache."""
    out: dict[str, list[float]] = {}
    clients: dict[str, Any] = {n: valkey.Valkey.from_url(_db(env, n)) for n in DBS if n != "source"}
    for c in clients.values():
        c.flushdb()
    caches = {
        size: AnswerCache(_db(env, size), prefix="big", namespace=NAMESPACE, timeout=TIMEOUT)
        for size in ("small", "big")
    }
    for size, n in (("small", small), ("big", big)):
        seconds, _ = _timed(partial(_fill_ours, caches[size], clients[size], n))
        out[f"fill.core.{size}"] = [seconds]
        out[f"keys.core.{size}"] = [float(clients[size].dbsize())]
        probe = caches[size].key("qa", {"q": n - 1})
        assert caches[size].lookup(probe) is not None, "the fill did not store servable entries"

    cases: list[tuple[str, Callable[[], Any]]] = []
    for size in ("small", "big"):
        cache = caches[size]
        cases.append((f"inv.ns.{size}.core", partial(cache.invalidate_namespace, NAMESPACE)))
        cases.append((f"inv.all.{size}.core", cache.invalidate_all))
    for name, _ in cases:
        out[name] = []
    out["inv.ns.small.recipe"] = []
    recipe_small = RecipeCache(clients["recipe_small"], prefix="big:recipe")
    for r in range(rounds):
        shift = r % len(cases)
        for name, call in [*cases[shift:], *cases[:shift]]:
            out[name].append(statistics.median(_timed(call)[0] for _ in range(ops)))
        _fill_recipe(clients["recipe_small"], small)
        seconds, n = _timed(lambda: recipe_small.invalidate_namespace(NAMESPACE))
        assert n == small, f"the recipe deleted {n} entries, expected {small}"
        out["inv.ns.small.recipe"].append(seconds)
    for size, n in (("small", small), ("big", big)):
        for q in (0, n - 1):
            assert caches[size].lookup(caches[size].key("qa", {"q": q})) is None, (
                "an invalidated entry was served"
            )

    seconds, _ = _timed(lambda: _fill_recipe(clients["recipe_big"], big))
    out["fill.recipe.big"] = [seconds]
    recipe_big = RecipeCache(clients["recipe_big"], prefix="big:recipe")
    seconds, n = _timed(lambda: recipe_big.invalidate_namespace(NAMESPACE))
    assert n == big, f"the recipe deleted {n} entries, expected {big}"
    out["inv.ns.big.recipe"] = [seconds]
    for c in clients.values():
        c.flushdb()
        c.close()
    return out
