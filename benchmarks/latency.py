"""Per-operation latency, side by side: the raw floor, the anchors, and ours (core and both adapters).

Every case reads or writes the same ~1.5 KB answer. Hits cycle over a hot set of `HOT` stored entries;
misses and updates use a fresh key per op. An update is timed alone: the lookup (a miss) that precedes it
in real use runs untimed just before it, so the write can check what that lookup saw, as it does in an app.

The `*_p512` cases run with `PENDING` lookups pending in one context, as after a text model's batch looked
every prompt up first: their setup makes that many lookups (misses, never written) in the context the timed
ops then run in, and every op checks, untimed, that the core's record of them (`seen.pending()`) still holds
them, so the row measures what it says.

Example:
    >>> cases = standalone_cases(env)  # doctest: +SKIP
    >>> run_rounds(cases, rounds=7, ops=400)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import valkey
import valkey.asyncio as avalkey
from adapters import Adapter
from payloads import (
    LLM_STRING,
    PROMPT,
    chat_generation,
    llamaindex_llm,
    llamaindex_messages,
    message_value,
    source_ids,
)
from recipe import RecipeCache
from timing import ACase, Case

from valkey_rag_cache import AnswerCache, seen
from valkey_rag_cache.ops.lookup import lookup
from valkey_rag_cache.ops.write import write

__all__ = ["HOT", "PENDING", "Env", "standalone_cases", "cluster_cases", "entry_bytes"]

HOT = 256
PENDING = seen.PER_CONTEXT  # lookups waiting for their writes in one context: all its record holds
NAMESPACE = "kb:support"
SOURCE_COUNTS = (0, 5, 50)


@dataclass
class Env:
    """Clients and caches of one Valkey deployment (standalone or cluster), sharing one event loop."""

    url: str
    loop: asyncio.AbstractEventLoop
    raw: Any  # sync valkey-py client
    araw: Any  # asyncio valkey-py client
    core: AnswerCache
    lc: Adapter
    li: Adapter
    payload: bytes = b""  # the bytes of one of our real entries: what the floor moves
    hot: int = HOT  # how many stored answers the hit cases cycle over
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    extras: dict[str, Any] = field(default_factory=dict)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


TIMEOUT = 5.0  # generous: on a loaded machine a 0.5 s default would turn slow hits into misses
# Every client, ours and the baselines', gets the same socket options: with a timeout, valkey.asyncio wraps
# each read in a timer, which a floor without one would not pay.
CLIENT_OPTIONS: dict[str, Any] = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}


def hit(value: Any) -> Any:
    """Fail loudly when a hit case did not hit (a timeout or an eviction would make the figure a lie)."""
    if value is None:
        raise RuntimeError("a hit case missed: its figures would not measure hits")
    return value


def stored(done: bool) -> bool:
    if not done:
        raise RuntimeError("an update case did not store: its figures would not measure writes")
    return done


def prompt(tag: str, i: int) -> str:
    return PROMPT.replace("#{i}", f"{tag}-{i}")


def pending_lookups(miss: Any) -> Any:
    """A case's setup: `PENDING` lookups that miss and are never written, in the context it runs in."""

    def setup() -> None:
        for j in range(PENDING):
            if miss(j) is not None:
                raise RuntimeError("a pending lookup hit: the case would not hold lookups waiting to write")
        held(None)

    return setup


def held(arg: Any) -> Any:
    """Untimed, before every op of a `*_p512` case: this context still holds `PENDING` pending lookups."""
    if seen.pending() < PENDING:
        raise RuntimeError(
            f"{seen.pending()} lookups pending, not {PENDING}: the case would not measure them"
        )
    return arg


def entry_bytes(env: Env) -> bytes:
    """Store one real answer through the core (5 sources) and read back the exact bytes Valkey holds."""
    key = env.core.key("qa", {"q": "payload-probe"})
    env.core.store(key, message_value(), source_ids(env.rng, 5))
    raw = env.raw.get(env.core.schema.entry(key))
    assert raw, "the core did not store the probe entry"
    return bytes(raw)


def _hot(env: Env) -> None:
    """Fill the hot sets every hit case reads."""
    value, n_hot = message_value(), env.hot
    pipe = env.raw.pipeline(transaction=False)
    for i in range(n_hot):
        pipe.set(f"bench:raw:hot:{i}", env.payload, ex=21600)
    pipe.execute()
    for i in range(n_hot):
        key = env.core.key("qa", {"q": f"hot-{i}"})
        env.core.lookup(key)
        env.core.store(key, value, source_ids(env.rng, 5))
    gen = [chat_generation()]
    if env.lc.available:
        for i in range(n_hot):
            with env.lc.cache.sources(source_ids(env.rng, 5)):
                env.lc.cache.update(prompt("hot", i), LLM_STRING, gen)
    if env.li.available:
        for i in range(n_hot):
            with env.li.cache.sources(source_ids(env.rng, 5)):
                env.li.llm.chat(llamaindex_messages(i))


def _floor_cases(env: Env) -> list[Case | ACase]:
    r, ar, payload, loop, n_hot = env.raw, env.araw, env.payload, env.loop, env.hot
    return [
        Case("raw.get", lambda i: hit(r.get(f"bench:raw:hot:{i % n_hot}"))),
        Case("raw.get_miss", lambda i: r.get(f"bench:raw:miss:{i}")),
        Case("raw.set", lambda i: r.set(f"bench:raw:set:{i}", payload, ex=21600)),
        Case(
            "raw.get_set",
            lambda i: (r.get(f"bench:raw:gs:{i}"), r.set(f"bench:raw:gs:{i}", payload, ex=21600)),
        ),
        ACase("raw.aget", lambda i: ar.get(f"bench:raw:hot:{i % n_hot}"), loop=loop),
        ACase("raw.aset", lambda i: ar.set(f"bench:raw:aset:{i}", payload, ex=21600), loop=loop),
    ]


def _core_cases(env: Env, loop: asyncio.AbstractEventLoop) -> list[Case | ACase]:
    core, value, rng = env.core, message_value(), env.rng
    hot = [core.key("qa", {"q": f"hot-{i}"}) for i in range(env.hot)]

    def fresh(tag: str, n: int) -> Any:
        def prepare(i: int) -> Any:
            key = core.key("qa", {"q": f"{tag}-{i}"})
            core.lookup(key)
            return key, source_ids(rng, n) if n else None

        return prepare

    def afresh(tag: str, n: int) -> Any:
        async def prepare(i: int) -> Any:
            key = core.key("qa", {"q": f"{tag}-{i}"})
            await core.alookup(key)
            return key, source_ids(rng, n) if n else None

        return prepare

    def key(tag: str) -> Any:
        return lambda i: core.key("qa", {"q": f"{tag}-{i}"})

    def update(a: Any) -> Any:
        return stored(core.store(a[0], value, a[1]))

    setup = pending_lookups(lambda j: core.lookup(core.key("qa", {"q": f"pending-{j}"})))
    pfresh = fresh("u5p", 5)
    cases: list[Case | ACase] = [
        # Keys are built beforehand, as the floor's are; `core.key` is timed on its own.
        Case("core.hit", lambda i: hit(core.lookup(hot[i % len(hot)]))),
        Case("core.key", lambda i: core.key("qa", {"q": f"hot-{i}"})),
        Case("core.miss", core.lookup, key("miss")),
        # The same with PENDING lookups pending in the case's context.
        Case("core.hit_p512", lambda i: hit(core.lookup(hot[i % len(hot)])), held, setup),
        Case("core.miss_p512", core.lookup, lambda i: held(core.key("qa", {"q": f"missp-{i}"})), setup),
        Case("core.update5_p512", update, lambda i: held(pfresh(i)), setup),
    ]
    for n in SOURCE_COUNTS:
        cases.append(Case(f"core.update{n}", update, fresh(f"u{n}", n)))

    async def ahit(i: int) -> Any:
        return hit(await core.alookup(hot[i % len(hot)]))

    async def aupdate(a: Any) -> Any:
        return stored(await core.astore(a[0], value, a[1]))

    cases += [
        ACase("core.ahit", ahit, loop=loop),
        ACase("core.aupdate5", aupdate, afresh("au5", 5), loop=loop),
    ]
    return cases


def _script_cases(env: Env) -> list[Case | ACase]:
    """The core's two scripts called bare (raw EVALSHA, arguments built untimed): Valkey's own share."""
    from valkey_rag_cache import as_sources

    core, raw, value, rng = env.core, env.raw, message_value(), env.rng
    ops_env = core.env  # the sans-IO flows yield the exact script calls that lookup() and store() make
    lookups = [next(lookup(ops_env, core.key("qa", {"q": f"hot-{i}"}))) for i in range(env.hot)]

    def call(op: Any) -> Any:
        return raw.evalsha(op.script.sha, len(op.keys), *op.keys, *op.args)

    def write_call(i: int) -> Any:
        key = core.key("qa", {"q": f"sw-{i}"})
        core.lookup(key)
        return next(write(ops_env, key, value, as_sources(source_ids(rng, 5)), core.seen(key)))

    return [
        Case("script.lookup", lambda i: call(lookups[i % len(lookups)])),
        Case("script.write5", lambda op: stored(call(op)), write_call),
    ]


def _langchain_cases(env: Env, loop: asyncio.AbstractEventLoop) -> list[Case | ACase]:
    if not env.lc.available:
        return []
    lc, rng, gen, n_hot = env.lc.cache, env.rng, [chat_generation()], env.hot

    def fresh(tag: str, n: int) -> Any:
        def prepare(i: int) -> Any:
            p = prompt(tag, i)
            lc.lookup(p, LLM_STRING)
            return p, source_ids(rng, n) if n else []

        return prepare

    def update(a: Any) -> Any:
        if not a[1]:
            return lc.update(a[0], LLM_STRING, gen)
        with lc.sources(a[1]):
            return lc.update(a[0], LLM_STRING, gen)

    async def afresh(i: int) -> Any:
        p = prompt("alc5", i)
        await lc.alookup(p, LLM_STRING)
        return p, source_ids(rng, 5)

    async def aupdate(a: Any) -> Any:
        with lc.sources(a[1]):
            return await lc.aupdate(a[0], LLM_STRING, gen)

    async def alc_hit(i: int) -> Any:
        return hit(await lc.alookup(prompt("hot", i % n_hot), LLM_STRING))

    setup = pending_lookups(lambda j: lc.lookup(prompt("pending", j), LLM_STRING))
    pfresh = fresh("lc5p", 5)
    cases: list[Case | ACase] = [
        Case("lc.hit", lambda i: hit(lc.lookup(prompt("hot", i % n_hot), LLM_STRING))),
        Case("lc.miss", lambda i: lc.lookup(prompt("miss", i), LLM_STRING)),
        # The same with PENDING lookups pending in the case's context (a text model's batch).
        Case("lc.hit_p512", lambda i: hit(lc.lookup(prompt("hot", i % n_hot), LLM_STRING)), held, setup),
        Case("lc.miss_p512", lambda i: lc.lookup(prompt("missp", i), LLM_STRING), held, setup),
        Case("lc.update5_p512", update, lambda i: held(pfresh(i)), setup),
    ]
    cases += [Case(f"lc.update{n}", update, fresh(f"lc{n}", n)) for n in SOURCE_COUNTS]
    cases += [
        ACase("lc.ahit", alc_hit, loop=loop),
        ACase("lc.aupdate5", aupdate, afresh, loop=loop),
    ]
    return cases


def _llamaindex_cases(env: Env) -> list[Case | ACase]:
    if not env.li.available:
        return []
    llm, inner, cache, rng = env.li.llm, env.li.inner, env.li.cache, env.rng
    hot = [llamaindex_messages(i) for i in range(env.hot)]
    n_hot = env.hot
    # The same fake LLM making one raw GET of an entry's bytes before it answers: LlamaIndex's wrappers
    # around a call that waits on a socket cost more than around one that does not (their code and data
    # are cold again after the wait), and a hit waits on one.
    raw = env.raw
    waiting = llamaindex_llm(before=lambda: raw.get("bench:raw:hot:0"))

    def miss_store(n: int) -> Any:
        def prepare(i: int) -> Any:
            return llamaindex_messages(10_000_000 * (n + 1) + i), source_ids(rng, n) if n else []

        def op(a: Any) -> Any:
            if not a[1]:
                return llm.chat(a[0])
            with cache.sources(a[1]):
                return llm.chat(a[0])

        return Case(f"li.miss_store{n}", op, prepare)

    return [
        Case("li.hit", lambda i: llm.chat(hot[i % n_hot])),
        Case("li.inner", lambda i: inner.chat(hot[i % n_hot])),
        Case("li.inner_io", lambda i: waiting.chat(hot[i % n_hot])),
        *[miss_store(n) for n in SOURCE_COUNTS],
    ]


def _anchor_cases(env: Env) -> list[Case | ACase]:
    import redis
    from langchain_community.cache import RedisCache

    rc = RedisCache(
        redis.Redis.from_url(env.url.replace("valkey://", "redis://"), **CLIENT_OPTIONS), ttl=21600
    )
    recipe = RecipeCache(env.raw, prefix="bench:recipe")
    rpy = rc.redis
    gen, value, rng, n_hot = [chat_generation()], message_value(), env.rng, env.hot
    for i in range(n_hot):
        rc.update(prompt("hot", i), LLM_STRING, gen)
        recipe.store(NAMESPACE, f"hot-{i}", value, source_ids(rng, 5))
    env.extras["redis_cache"] = rc
    return [
        Case("rc.hit", lambda i: hit(rc.lookup(prompt("hot", i % n_hot), LLM_STRING))),
        Case("rc.update", lambda i: rc.update(prompt("rcu", i), LLM_STRING, gen)),
        Case("redispy.get", lambda i: rpy.get(f"bench:raw:hot:{i % n_hot}")),
        Case("recipe.hit", lambda i: hit(recipe.lookup(NAMESPACE, f"hot-{i % n_hot}"))),
        Case(
            "recipe.update5",
            lambda a: recipe.store(NAMESPACE, a[0], value, a[1]),
            lambda i: (f"u-{i}", source_ids(rng, 5)),
        ),
    ]


def standalone_cases(env: Env) -> list[Case | ACase]:
    env.payload = entry_bytes(env)
    _hot(env)
    return [
        *_floor_cases(env),
        *_anchor_cases(env),
        *_core_cases(env, env.loop),
        *_script_cases(env),
        *_langchain_cases(env, env.loop),
        *_llamaindex_cases(env),
    ]


def cluster_cases(env: Env) -> list[Case | ACase]:
    """Hit and update on a cluster: the floor, the core and the adapters (RedisCache needs a plain client)."""
    env.payload = entry_bytes(env)
    _hot(env)
    wanted = {
        "raw.get",
        "raw.set",
        "core.hit",
        "core.update5",
        "lc.hit",
        "lc.update5",
        "li.hit",
        "li.inner",
        "li.inner_io",
        "li.miss_store5",
        "raw.get_set",
    }
    cases = [
        *_floor_cases(env),
        *_core_cases(env, env.loop),
        *_langchain_cases(env, env.loop),
        *_llamaindex_cases(env),
    ]
    return [c for c in cases if c.name in wanted]


def make_env(url: str, loop: asyncio.AbstractEventLoop, *, cluster: bool, prefix: str) -> Env:
    from adapters import langchain_cache, llamaindex_llm

    if cluster:
        from valkey.asyncio.cluster import ValkeyCluster as AsyncValkeyCluster
        from valkey.cluster import ValkeyCluster

        raw: Any = ValkeyCluster.from_url(url, **CLIENT_OPTIONS)

        async def make_async() -> Any:
            return AsyncValkeyCluster.from_url(url, **CLIENT_OPTIONS)

        araw = loop.run_until_complete(make_async())
    else:
        raw = valkey.Valkey.from_url(url, **CLIENT_OPTIONS)

        async def make_plain() -> Any:
            return avalkey.Valkey.from_url(url, **CLIENT_OPTIONS)

        araw = loop.run_until_complete(make_plain())
    core = AnswerCache(url, prefix=prefix, namespace=NAMESPACE, timeout=TIMEOUT)
    lc = langchain_cache(url, prefix=prefix + "lc", namespace=NAMESPACE, timeout=TIMEOUT)
    li = llamaindex_llm(url, prefix=prefix + "li", namespace=NAMESPACE, timeout=TIMEOUT)
    return Env(url=url, loop=loop, raw=raw, araw=araw, core=core, lc=lc, li=li)
