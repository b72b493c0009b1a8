"""Invalidation at scale: by source (1 to 10,000 dependents) and by namespace / version (1k to 1M entries).

Each size lives in its own database of the one server, so a SCAN (the recipe's) walks exactly the keys of
its own size. Ours invalidates a namespace or the version by replacing a token: entries stay until their TTL
or `purge()`, which is the point (O(1) whatever the size); the recipe deletes them (SCAN + DELETE), so its
data is refilled (untimed) before every measurement, and its million-entry run is done once.

Example:
    >>> by_source(env, dependents=(1, 100, 10_000), rounds=5)  # doctest: +SKIP
    {'inv.src1.core': [...], 'inv.src1.recipe': [...], ...}
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import valkey
from bulk import fill
from latency import TIMEOUT, Env
from payloads import message_value, small_value, source_ids
from recipe import RecipeCache

from valkey_rag_cache import AnswerCache

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
    client = valkey.Valkey.from_url(url)
    client.flushdb()
    cache = AnswerCache(url, prefix="inv", namespace="kb:support", timeout=TIMEOUT)
    recipe = RecipeCache(client, prefix="inv:recipe")
    value, rng = message_value(), random.Random(5)
    out: dict[str, list[float]] = {f"inv.src{d}.{who}": [] for d in dependents for who in ("core", "recipe")}
    for r in range(rounds):
        shift = r % len(dependents)
        for d in [*dependents[shift:], *dependents[:shift]]:
            per_round = max(1, min(most, 2000 // d))  # several small invalidations per round, one large one
            hot = [f"kb/hot/r{r}-d{d}-s{s}.md" for s in range(per_round)]
            items = [
                (cache.key("qa", {"r": r, "d": d, "s": s, "j": j}), value, [hot[s], *source_ids(rng, 4)])
                for s in range(per_round)
                for j in range(d)
            ]
            fill(cache, client, items)
            pipe = client.pipeline(transaction=False)
            for s in range(per_round):
                for j in range(d):
                    recipe.store("kb:support", f"r{r}-d{d}-s{s}-j{j}", value, [hot[s], *source_ids(rng, 4)], pipe)
            pipe.execute()
            ours, theirs = [], []
            for source in hot:
                seconds, n = _timed(lambda s=source: cache.invalidate_source(s))
                assert n == d, f"invalidate_source removed {n} entries, expected {d}"
                ours.append(seconds)
                seconds, n = _timed(lambda s=source: recipe.invalidate_source(s))
                assert n == d, f"the recipe removed {n} entries, expected {d}"
                theirs.append(seconds)
            out[f"inv.src{d}.core"].append(statistics.median(ours))
            out[f"inv.src{d}.recipe"].append(statistics.median(theirs))
    client.flushdb()
    client.close()
    return out


def _fill_recipe(client: Any, size: int, batch: int = 5000) -> None:
    recipe = RecipeCache(client, prefix="big:recipe")
    for start in range(0, size, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(size, start + batch)):
            recipe.store(NAMESPACE, f"q-{i}", small_value(i), [f"kb/doc-{i % 10_000}.md"], pipe)
        pipe.execute()


def _fill_ours(cache: AnswerCache, client: Any, size: int) -> None:
    items = ((cache.key("qa", {"q": i}), small_value(i), [f"kb/doc-{i % 10_000}.md"]) for i in range(size))
    fill(cache, client, items, batch=5000)


def at_scale(env: Env, small: int, big: int, rounds: int, ops: int) -> dict[str, list[float]]:
    """Seconds per namespace / version invalidation with `small` and `big` entries in the cache."""
    out: dict[str, list[float]] = {}
    clients = {name: valkey.Valkey.from_url(_db(env, name)) for name in DBS if name != "source"}
    for c in clients.values():
        c.flushdb()
    caches = {
        size: AnswerCache(_db(env, size), prefix="big", namespace=NAMESPACE, timeout=TIMEOUT) for size in ("small", "big")
    }
    for size, n in (("small", small), ("big", big)):
        seconds, _ = _timed(lambda s=size, n=n: _fill_ours(caches[s], clients[s], n))
        out[f"fill.core.{size}"] = [seconds]
        out[f"keys.core.{size}"] = [float(clients[size].dbsize())]
        probe = caches[size].key("qa", {"q": 0})
        assert caches[size].lookup(probe) is not None, "the fill did not store servable entries"

    cases: list[tuple[str, Callable[[], Any]]] = []
    for size in ("small", "big"):
        cache = caches[size]
        cases.append((f"inv.ns.{size}.core", lambda c=cache: c.invalidate_namespace(NAMESPACE)))
        cases.append((f"inv.all.{size}.core", lambda c=cache: c.invalidate_all()))
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
    for size in ("small", "big"):
        probe = caches[size].key("qa", {"q": 0})
        assert caches[size].lookup(probe) is None, "an invalidated entry was served"

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
