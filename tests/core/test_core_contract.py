"""The core's contract, run against fakeredis, a real standalone Valkey and a real 3-primary cluster.

The ``glide`` backends run it again over Valkey GLIDE clients on the same real servers (glide_support.py).
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any

import pytest

import valkey_rag_cache.ops.write as write_op
from valkey_rag_cache import AnswerCache, DecodeError, InvalidationError, Source, TTLPolicy, decoding

# Standalone-only behaviours (fakeredis, the real server, and the real server through GLIDE).
STANDALONE = [
    pytest.param("fake", marks=pytest.mark.fake),
    pytest.param("standalone", marks=pytest.mark.standalone),
    pytest.param("glide", marks=[pytest.mark.standalone, pytest.mark.glide]),
]


def entry_key(cache: AnswerCache, key: Any) -> str:
    return cache.schema.entry(key)


def keys_under(raw: Any, prefix: str) -> list[str]:
    out = []
    if hasattr(raw, "get_primaries"):
        for node in raw.get_primaries():
            out += [k.decode() for k in raw.get_valkey_connection(node).scan_iter(match=f"{prefix}:*")]
    else:
        out = [k.decode() for k in raw.scan_iter(match=f"{prefix}:*")]
    return sorted(out)


def put(cache: AnswerCache, parts: object, value: object, sources: Any = None, **kw: Any) -> Any:
    key = cache.key("qa", parts)
    assert cache.lookup(key) is None
    assert cache.store(key, value, sources, **kw)
    return key


# -- basics ----


def test_miss_then_hit_returns_what_was_stored(make_cache: Any) -> None:
    cache = make_cache(namespace="docs:technical")
    value = {"text": "héllo ✓", "blocks": [1, 2.5, None, True], "nested": {"lc": 1, "type": "secret"}}
    key = put(cache, {"q": "x"}, value, [Source("a.md", "static"), "b.md"])
    hit = cache.lookup(key)
    assert hit is not None
    assert hit.value == value
    assert hit.sources == ("a.md", "b.md")
    assert hit.content_type == "static"


def test_keys_differ_for_everything_that_changes_the_answer(make_cache: Any) -> None:
    cache = make_cache()
    a = cache.key("lc", {"prompt": "p", "llm": "m---tools=[x]"})
    b = cache.key("lc", {"prompt": "p", "llm": "m---tools=[y]"})
    c = cache.key("lc", {"prompt": "p", "llm": "m---tools=[x]"}, namespace="other")
    assert len({a, b, c}) == 3
    assert a == cache.key("lc", {"llm": "m---tools=[x]", "prompt": "p"})


def test_every_key_lives_under_the_prefix_and_names_its_namespace(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    cache = make_cache(namespace="docs:technical")
    key = put(cache, "q", "a", ["doc-1"])
    names = keys_under(raw_client, prefix)
    assert names and all(n.startswith(prefix + ":") for n in names)
    assert any(n == entry_key(cache, key) and ":e:docs:technical:" in n for n in names)


@pytest.mark.parametrize("bad", ["", "docs::x", ":docs", "docs:"])
def test_invalid_namespace_is_a_value_error(make_cache: Any, bad: str) -> None:
    with pytest.raises(ValueError):
        make_cache(namespace=bad)


def test_empty_source_id_is_a_value_error(make_cache: Any) -> None:
    cache = make_cache()
    with pytest.raises(ValueError):
        cache.invalidate_source("")
    with pytest.raises(ValueError):
        cache.store(cache.key("qa", 1), "x", [""])


def test_any_characters_in_namespaces_and_source_ids(make_cache: Any, raw_client: Any, prefix: str) -> None:
    weird_ns = "d*c?s:[te]ch{n}:ünï cødé"
    weird_src = "file:///tmp/*?[]{}\n ünï.md"
    cache = make_cache(namespace=weird_ns)
    key = put(cache, "q", "a", [weird_src])
    assert cache.lookup(key) is not None
    assert cache.dependents(weird_src) == [entry_key(cache, key)]
    assert cache.invalidate_source(weird_src) == 1
    assert cache.lookup(key) is None
    put(cache, "q2", "b", [weird_src])
    assert cache.clear() >= 1
    assert all(n.startswith(prefix + ":") for n in keys_under(raw_client, prefix))


# -- 1. TTL by content type ----


def test_ttl_is_the_smallest_of_the_sources_content_types(make_cache: Any, raw_client: Any) -> None:
    cache = make_cache()
    k1 = put(cache, 1, "a", [Source("s", "static"), Source("r", "realtime")])
    k2 = put(cache, 2, "a", [Source("s", "static")])
    k3 = put(cache, 3, "a", [])
    k4 = put(cache, 4, "a", [Source("u", "user")], ttl="90s")
    assert 290 <= raw_client.ttl(entry_key(cache, k1)) <= 300
    assert 86390 <= raw_client.ttl(entry_key(cache, k2)) <= 86400
    assert 21590 <= raw_client.ttl(entry_key(cache, k3)) <= 21600  # default content type: documentation
    assert 80 <= raw_client.ttl(entry_key(cache, k4)) <= 90


def test_ttl_policy_is_overridable_per_cache(make_cache: Any, raw_client: Any) -> None:
    cache = make_cache(ttl_policy={"realtime": 60, "news": "10m"}, default_content_type="user")
    k1 = put(cache, 1, "a", [Source("n", "news")])
    k2 = put(cache, 2, "a")
    k3 = put(cache, 3, "a", [Source("r", "realtime")])
    assert 590 <= raw_client.ttl(entry_key(cache, k1)) <= 600
    assert 3590 <= raw_client.ttl(entry_key(cache, k2)) <= 3600
    assert 50 <= raw_client.ttl(entry_key(cache, k3)) <= 60


def test_a_hit_never_extends_an_entry(make_cache: Any, raw_client: Any) -> None:
    cache = make_cache()
    key = put(cache, 1, "a", [Source("r", "realtime")])
    raw_client.expire(entry_key(cache, key), 100)
    for _ in range(3):
        assert cache.lookup(key) is not None
    assert raw_client.ttl(entry_key(cache, key)) <= 100


def test_ttl_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TTLPolicy({"realtime": -1})
    with pytest.raises(ValueError):
        TTLPolicy({"realtime": "soon"})
    with pytest.raises(ValueError):
        TTLPolicy(default_content_type="unknown")


# -- 2. version tagging ----


def test_invalidate_all_retires_every_namespace_and_later_writes_work(make_cache: Any) -> None:
    names = ["docs:technical", "docs:support", "faqs:billing", "a", "b", "c"]
    caches = [make_cache(namespace=n) for n in names]
    keys = [put(c, i, f"v{i}", [f"doc-{i}"]) for i, c in enumerate(caches)]
    caches[0].invalidate_all()
    assert all(c.lookup(k) is None for c, k in zip(caches, keys, strict=True))
    k = put(caches[1], "after", "fresh")
    assert caches[1].lookup(k).value == "fresh"  # type: ignore[union-attr]


# -- 3. event-driven: invalidation by source ----


def test_invalidate_source_removes_dependents_in_every_namespace(make_cache: Any) -> None:
    caches = {n: make_cache(namespace=n) for n in ["docs:technical", "faqs:billing", "zeta"]}
    dependent = [put(c, n, "x", ["shared.md", f"{n}.md"]) for n, c in caches.items()]
    unrelated = {n: put(c, n + "-other", "y", ["other.md"]) for n, c in caches.items()}
    expected = sorted(entry_key(caches["zeta"], k) for k in dependent)
    assert caches["zeta"].dependents("shared.md") == expected
    assert caches["zeta"].invalidate_source("shared.md") == 3
    assert all(c.lookup(k) is None for c, k in zip(caches.values(), dependent, strict=True))
    assert all(caches[n].lookup(k) is not None for n, k in unrelated.items())
    assert caches["zeta"].dependents("shared.md") == []
    assert caches["zeta"].invalidate_source("shared.md") == 0


def test_invalidate_sources_takes_many_ids(make_cache: Any) -> None:
    cache = make_cache()
    keys = [put(cache, i, "x", [f"d{i}"]) for i in range(4)]
    assert cache.invalidate_sources(["d0", "d1", "d2"]) == 3
    assert [cache.lookup(k) is None for k in keys] == [True, True, True, False]


def test_many_dependents_are_deleted_in_batches(make_cache: Any) -> None:
    cache = make_cache()
    for i in range(1200):
        assert cache.store(cache.key("qa", i), i, ["hot.md"])
    assert cache.invalidate_source("hot.md") == 1200
    assert cache.lookup(cache.key("qa", 7)) is None


# -- 4. hierarchical namespaces ----


def test_invalidate_namespace_covers_the_subtree_only(make_cache: Any) -> None:
    caches = {
        n: make_cache(namespace=n)
        for n in ["docs", "docs:technical", "docs:support", "docs2", "faqs:billing"]
    }
    keys = {n: put(c, n, n) for n, c in caches.items()}
    caches["faqs:billing"].invalidate_namespace("docs")
    alive = {n: caches[n].lookup(k) is not None for n, k in keys.items()}
    assert alive == {
        "docs": False,
        "docs:technical": False,
        "docs:support": False,
        "docs2": True,
        "faqs:billing": True,
    }


def test_invalidate_namespace_of_a_leaf_spares_its_siblings(make_cache: Any) -> None:
    tech, sup = make_cache(namespace="docs:technical"), make_cache(namespace="docs:support")
    kt, ks = put(tech, 1, "t"), put(sup, 1, "s")
    tech.invalidate_namespace()
    assert tech.lookup(kt) is None
    assert sup.lookup(ks) is not None


def test_clear_removes_only_its_namespace(make_cache: Any, raw_client: Any, prefix: str) -> None:
    mine, sub, other = (make_cache(namespace=n) for n in ["docs", "docs:technical", "faqs"])
    km, ks, ko = put(mine, 1, "m"), put(sub, 1, "s"), put(other, 1, "o")
    raw_client.set("foreign-key", "keep")
    raw_client.set(f"{prefix}x:{{docs}}:e:docs:abc", "keep")  # a different prefix that starts the same way
    assert mine.clear() == 2
    assert mine.lookup(km) is None and sub.lookup(ks) is None
    assert other.lookup(ko) is not None
    assert raw_client.get("foreign-key") == b"keep"
    assert raw_client.get(f"{prefix}x:{{docs}}:e:docs:abc") == b"keep"
    assert not raw_client.exists(entry_key(mine, km))


def test_purge_reclaims_invalidated_entries_and_dead_links(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    cache = make_cache(namespace="docs")
    keys = [put(cache, i, i, ["d.md"]) for i in range(5)]
    cache.invalidate_namespace()
    raw_client.set("foreign", "keep")
    removed = cache.purge(count=2)
    assert removed >= 5
    assert not any(raw_client.exists(entry_key(cache, k)) for k in keys)
    assert raw_client.get("foreign") == b"keep"


# -- guarantees: no stale hit, ever ----


def test_no_stale_hit_when_the_dependency_sets_were_evicted(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    cache = make_cache()
    key = put(cache, 1, "old", ["doc"])
    for name in keys_under(raw_client, prefix):
        if ":d:" in name:
            raw_client.delete(name)
    cache.invalidate_source("doc")
    assert cache.lookup(key) is None


@pytest.mark.parametrize("invalidation", ["source", "new-source", "namespace", "all"])
def test_a_write_after_an_invalidation_that_followed_its_miss_is_refused(
    make_cache: Any, invalidation: str
) -> None:
    cache = make_cache(namespace="docs:technical")
    warm = put(cache, "warm", "w", ["doc"])  # the source already has a token
    assert cache.lookup(warm) is not None
    key = cache.key("qa", "question")
    assert cache.lookup(key) is None  # miss: the answer is computed from the old document now...
    source = "brand-new" if invalidation == "new-source" else "doc"
    {
        "source": lambda: cache.invalidate_source("doc"),
        "new-source": lambda: cache.invalidate_source("brand-new"),
        "namespace": lambda: cache.invalidate_namespace("docs"),
        "all": cache.invalidate_all,
    }[invalidation]()
    assert cache.store(key, "built on the old document", [source]) is False
    assert cache.lookup(key) is None
    assert cache.stats()["totals"]["refused"] == 1
    # The next round trip (miss, recompute, write) is not blocked.
    assert cache.store(key, "fresh", [source]) is True
    assert cache.lookup(key).value == "fresh"  # type: ignore[union-attr]


def test_a_write_is_checked_against_the_lookup_seen_in_another_context(make_cache: Any) -> None:
    cache = make_cache()
    key = cache.key("qa", "q")
    assert cache.lookup(key) is None
    seen = cache.seen(key)
    assert seen is not None
    cache.invalidate_source("doc")
    import contextvars

    stored = contextvars.Context().run(lambda: cache.store(key, "stale", ["doc"], seen=seen))
    assert stored is False


def _is_cluster(make_cache: Any) -> bool:
    return bool(make_cache.backend.endswith("cluster"))


def test_no_stale_hit_when_any_subset_of_keys_is_evicted(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    """Evict random subsets of the cache's keys around invalidations; an invalidated answer never comes back.

    In a cluster the index of groups has no TTL and is never evicted under volatile-* (the design's premise);
    everything else may go, at any point.
    """
    rng = random.Random(7)
    caches = [make_cache(namespace=n) for n in ["docs:technical", "docs:support", "faqs:billing"]]
    for round_ in range(6):
        written = []
        for i in range(12):
            c = caches[i % 3]
            srcs = [f"doc-{rng.randrange(6)}" for _ in range(rng.randrange(1, 3))]
            k = c.key("qa", (round_, i))
            c.lookup(k)
            if c.store(k, i, srcs):
                written.append((c, k, set(srcs)))
        names = keys_under(raw_client, prefix)
        protected = {f"{prefix}:groups"} if _is_cluster(make_cache) else set()
        before = [n for n in names if n not in protected and rng.random() < 0.3]
        if before:
            for n in before:
                raw_client.delete(n)
        victim = f"doc-{rng.randrange(6)}"
        caches[round_ % 3].invalidate_source(victim)
        after = [n for n in keys_under(raw_client, prefix) if n not in protected and rng.random() < 0.3]
        for n in after:
            raw_client.delete(n)
        for c, k, srcs in written:
            if victim in srcs:
                assert c.lookup(k) is None, f"stale hit after invalidating {victim}"


@pytest.mark.parametrize("backend", STANDALONE, indirect=True)
def test_standalone_recovers_from_an_evicted_index_of_groups(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    # In a cluster the index of groups has no TTL and volatile-* never evicts it: see the README's limits.
    cache = make_cache(namespace="docs")
    key = put(cache, 1, "old", ["doc"])
    raw_client.delete(f"{prefix}:groups")  # evicted under allkeys-*
    cache.invalidate_source("doc")  # finds no group to invalidate in...
    assert cache.lookup(key) is None  # ...but the unregistered group is retired on its next lookup


# -- the dependency index ----


def test_dependency_set_lives_no_longer_than_its_last_dependent(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    cache = make_cache()
    put(cache, 1, "a", [Source("doc", "realtime")])
    deps = [n for n in keys_under(raw_client, prefix) if ":d:" in n]
    assert len(deps) == 1
    assert 0 < raw_client.ttl(deps[0]) <= 300
    put(cache, 2, "b", [Source("doc", "user")])
    assert 3000 < raw_client.ttl(deps[0]) <= 3600  # lengthened to the longest-lived dependent, never more
    put(cache, 3, "c", [Source("doc", "realtime")])
    assert 3000 < raw_client.ttl(deps[0]) <= 3600  # a shorter-lived dependent never shortens it


def test_housekeeping_writes_lengthen_source_tokens_and_leave_the_others_without_a_ttl(
    make_cache: Any, raw_client: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make_cache()
    put(cache, 1, "a", [Source("doc", "realtime")])
    tokens = [n for n in keys_under(raw_client, prefix) if ":t:" in n]
    source_token = next(n for n in tokens if ":t:s:" in n)
    others = [n for n in tokens if n != source_token]
    assert others and all(raw_client.ttl(n) == -1 for n in others)  # the version's, each namespace level's
    raw_client.expire(source_token, 100)
    monkeypatch.setattr(write_op, "_WRITES", itertools.repeat(0))  # every write does the housekeeping
    put(cache, 2, "b", [Source("doc", "user")])
    assert 3000 < raw_client.ttl(source_token) <= 3600  # lengthened to its newest dependent's
    put(cache, 3, "c", [Source("doc", "realtime")])
    assert 3000 < raw_client.ttl(source_token) <= 3600  # never shortened
    assert all(raw_client.ttl(n) == -1 for n in others)  # never given a TTL


def test_dead_members_are_pruned(make_cache: Any, raw_client: Any, prefix: str) -> None:
    cache = make_cache()
    keys = [put(cache, i, i, ["doc"]) for i in range(6)]
    for k in keys:
        raw_client.delete(entry_key(cache, k))  # evicted
    deps = [n for n in keys_under(raw_client, prefix) if ":d:" in n][0]
    assert raw_client.scard(deps) == 6
    assert cache.purge() >= 6
    assert raw_client.scard(deps) == 0


def test_writes_prune_dead_members_as_they_go(make_cache: Any, raw_client: Any, prefix: str) -> None:
    cache = make_cache()
    keys = [put(cache, i, i, ["doc"]) for i in range(10)]
    for k in keys:
        raw_client.delete(entry_key(cache, k))
    deps = [n for n in keys_under(raw_client, prefix) if ":d:" in n][0]
    for i in range(10, 50):
        put(cache, i, i, ["doc"])
    assert raw_client.scard(deps) < 50


def test_housekeeping_prunes_dead_members_only(
    make_cache: Any, raw_client: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_op, "_WRITES", itertools.repeat(0))  # every write does the housekeeping
    cache = make_cache()
    keys = [put(cache, i, i, ["doc"]) for i in range(12)]
    for k in keys[:6]:
        raw_client.delete(entry_key(cache, k))  # evicted: their members are dead
    live = keys[6:] + [put(cache, i, i, ["doc"]) for i in range(12, 30)]
    deps = [n for n in keys_under(raw_client, prefix) if ":d:" in n][0]
    members = {m.decode() for m in raw_client.smembers(deps)}
    assert {k.digest for k in live} <= members  # every live answer is still listed...
    assert len(members) < 30  # ...and dead ones were pruned
    assert cache.invalidate_source("doc") == len(live)  # so an invalidation deletes every one of them


# -- bad stored data ----


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: b"\x00\xffgarbage",
        lambda v: v[: len(v) // 2],
        lambda v: v.replace(b"vrc1", b"vrc9", 1),
        lambda v: v[: v.index(b"\n\n") + 2] + b'{"f":2,"v":1}',
        lambda v: v[: v.index(b"\n\n") + 2] + b"not json",
        lambda v: v[: v.index(b"\n\n") + 2] + b'{"f":1,"src":"x","ct":null,"at":1,"v":1}',
        lambda v: b"vrc1\nzz\nn:x 1\n\n" + v[v.index(b"\n\n") + 2 :],  # no version token: not ours
    ],
    ids=[
        "garbage",
        "truncated",
        "other-version",
        "other-body-version",
        "not-json",
        "bad-fields",
        "no-version-token",
    ],
)
def test_bad_stored_data_is_a_counted_miss_and_is_deleted(
    make_cache: Any, raw_client: Any, tamper: Any
) -> None:
    cache = make_cache()
    key = put(cache, 1, {"a": 1}, ["doc"])
    name = entry_key(cache, key)
    raw_client.set(name, tamper(raw_client.get(name)), keepttl=True)
    assert cache.lookup(key) is None
    assert not raw_client.exists(name)
    totals = cache.stats()["totals"]
    assert totals["bad"] + totals["stale"] >= 1
    assert totals["hits"] == 0  # a bad entry never counts as a hit


# -- stats ----


def test_stats_are_counted_per_namespace(make_cache: Any) -> None:
    tech, bill = make_cache(namespace="docs:technical"), make_cache(namespace="faqs:billing")
    k = put(tech, 1, "a", ["doc"])
    tech.lookup(k)
    tech.lookup(k)
    bill.lookup(bill.key("qa", 1))
    tech.invalidate_source("doc")
    tech.lookup(k)
    s = tech.stats()
    assert s["namespaces"]["docs:technical"]["hits"] == 2
    assert s["namespaces"]["docs:technical"]["misses"] == 2
    assert s["namespaces"]["docs:technical"]["writes"] == 1
    assert s["namespaces"]["faqs:billing"]["misses"] == 1
    assert s["totals"]["invalidations"] >= 1
    assert s["process"]["errors"] == 0


# -- async twins ----


async def test_async_operations_match_the_sync_ones(amake_cache: Any) -> None:
    cache = await amake_cache(namespace="docs")
    key = cache.key("qa", "async")
    assert await cache.alookup(key) is None
    assert await cache.astore(key, {"a": 1}, [Source("doc", "realtime")])
    hit = await cache.alookup(key)
    assert hit is not None and hit.value == {"a": 1}
    assert await cache.adependents("doc") == [cache.schema.entry(key)]
    assert await cache.ainvalidate_source("doc") == 1
    assert await cache.alookup(key) is None
    assert await cache.astore(key, 2, ["doc"])
    await cache.ainvalidate_namespace("docs")
    assert await cache.alookup(key) is None
    assert await cache.astore(key, 3, ["doc"])
    await cache.ainvalidate_all()
    assert await cache.alookup(key) is None
    assert await cache.astore(key, 4, ["doc"])
    assert await cache.aclear() == 1
    assert (await cache.astats())["totals"]["hits"] == 1


def test_sources_scope_attaches_sources(make_cache: Any) -> None:
    cache = make_cache()
    key = cache.key("qa", 1)
    cache.lookup(key)
    with cache.sources(["scoped.md"], content_type="realtime"):
        assert cache.store(key, "x")
    assert cache.lookup(key).sources == ("scoped.md",)  # type: ignore[union-attr]
    assert cache.invalidate_source("scoped.md") == 1


def test_nested_scopes_and_explicit_sources_merge_in_order_once_each(make_cache: Any) -> None:
    cache = make_cache()
    key, plain = cache.key("qa", "merged"), cache.key("qa", "scoped only")
    cache.lookup(key)
    cache.lookup(plain)
    with cache.sources(["a.md", "b.md"]), cache.sources(["b.md", "c.md", "a.md"]):
        assert cache.store(key, "x", ["d.md", "b.md"])  # explicit first, then the scopes' (outer first)
        assert cache.store(plain, "y")
    assert cache.lookup(key).sources == ("d.md", "b.md", "a.md", "c.md")  # type: ignore[union-attr]
    assert cache.lookup(plain).sources == ("a.md", "b.md", "c.md")  # type: ignore[union-attr]
    assert cache.scoped_sources() == ()


def test_doctor_reads_the_server(make_cache: Any) -> None:
    report = make_cache().doctor()
    if make_cache.backend == "fake":
        assert report.maxmemory_policy is None and report.notes
    else:
        assert report.maxmemory_policy in ("volatile-lru", "noeviction")
        assert report.cluster == make_cache.backend.endswith("cluster")
        assert str(report)


def test_invalidations_raise_when_the_backend_is_down(unused_port: int) -> None:
    cache = AnswerCache(f"valkey://127.0.0.1:{unused_port}", timeout=0.2)
    with pytest.raises(InvalidationError):
        cache.invalidate_source("doc")


# -- re-registration, hostile data, large inputs ----


def test_a_write_without_lookup_does_not_revive_a_group_an_invalidation_skipped(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    cache = make_cache(namespace="docs")
    old = put(cache, "old", "built on v1", ["doc-1"])
    raw_client.delete(f"{prefix}:groups")  # the index of groups was evicted...
    cache.invalidate_source("doc-1")  # ...so this invalidation found no group
    assert cache.store(cache.key("qa", "other"), "x", ["doc-2"])  # a write with no lookup re-registers
    assert cache.lookup(old) is None


def test_entries_with_thousands_of_sources(make_cache: Any) -> None:
    cache = make_cache(timeout=5.0)  # one write of 9000 tokens: not a test of the timeout on a busy machine
    key = cache.key("qa", "wide")
    cache.lookup(key)
    ids = [f"doc-{i}" for i in range(9000)]
    assert cache.store(key, "x", ids)
    assert cache.lookup(key).value == "x"  # type: ignore[union-attr]
    assert cache.invalidate_sources(ids[-1200:]) == 1
    assert cache.lookup(key) is None


def test_hostile_values_under_the_prefix_are_misses(make_cache: Any, raw_client: Any, prefix: str) -> None:
    cache = make_cache(namespace="docs")
    key = put(cache, 1, "a", ["doc"])
    name = entry_key(cache, key)
    base = cache.schema.group_base("docs")
    # An entry key holding a hash, a token without an era, a clock whose era has a space.
    raw_client.delete(name)
    raw_client.hset(name, "x", "y")
    assert cache.lookup(key) is None
    assert not raw_client.exists(name)
    raw_client.set(base + "t:" + cache.schema.source_suffix("doc"), "garbage")
    assert cache.store(key, "b", ["doc"])
    assert cache.lookup(key).value == "b"  # type: ignore[union-attr]
    raw_client.hset(base + "clock", "e", "two words")
    other = cache.key("qa", 2)
    assert cache.lookup(other) is None
    assert cache.store(other, "c", ["doc"])
    # A header with more dependency lines than Lua can unpack at once.
    lines = "\n".join(f"s:{i:016d} 1" for i in range(9000))
    raw_client.set(name, f"vrc1\nzz 0\na 1\n{lines}\n\n{{}}")
    assert cache.lookup(key) is None
    assert cache.stats()["process"]["errors"] == 0


def test_a_value_json_cannot_hold_is_not_stored(make_cache: Any) -> None:
    cache = make_cache()
    key = cache.key("qa", 1)
    assert cache.store(key, {"x": object()}) is False
    assert cache.store(key, float("nan")) is False
    assert cache.lookup(key) is None


def test_decode_failures_are_bad_data_and_keep_the_race_check(
    make_cache: Any, raw_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache()
    key = put(cache, 1, {"shape": "old"}, ["doc"])

    def decode(value: Any) -> Any:
        raise DecodeError("unexpected shape")

    with caplog.at_level(logging.DEBUG, logger="valkey_rag_cache"):
        assert cache.lookup(key, decode=decode) is None
    # Bad data is counted, not logged: stored bytes must not flood the logs. The one record is the per-lookup
    # DEBUG line (outcome, namespace, key digest, time), which holds none of them.
    assert [r.getMessage().split()[1:3] for r in caplog.records] == [["lookup", "bad"]]
    assert "old" not in caplog.text and "shape" not in caplog.text
    assert not raw_client.exists(entry_key(cache, key))
    totals = cache.stats()["totals"]
    assert (totals["bad"], totals["hits"], totals["misses"]) == (1, 0, 2)  # put()'s miss, then this one
    cache.invalidate_source("doc")  # overtakes the answer being computed after that miss
    assert cache.store(key, "stale", ["doc"]) is False
    assert cache.lookup(key, decode=lambda v: v.upper()) is None
    assert cache.store(key, "fresh", ["doc"]) is True
    assert cache.lookup(key, decode=lambda v: v.upper()).value == "FRESH"  # type: ignore[union-attr]


def test_a_decoder_bug_is_logged_once_with_its_traceback_and_is_a_miss(
    make_cache: Any, raw_client: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decoding, "_said", set())  # once per process: each backend's run starts afresh
    cache = make_cache()
    prompt = "What is my secret plan?"
    key = put(cache, {"prompt": prompt}, {"answer": "the plan"}, ["doc"])

    def buggy_decode(value: Any) -> Any:
        return value["no such field"]  # a KeyError: a bug in the decoder, not bad data

    with caplog.at_level(logging.WARNING, logger="valkey_rag_cache"):
        assert cache.lookup(key, decode=buggy_decode) is None  # a miss, not an exception
        assert cache.store(key, {"answer": "again"}, ["doc"])
        assert cache.lookup(key, decode=buggy_decode) is None
    (record,) = [r for r in caplog.records if "buggy_decode" in r.getMessage()]  # said once
    assert record.levelno == logging.ERROR and record.exc_info and record.exc_info[0] is KeyError
    assert "KeyError" in caplog.text and "Traceback" in caplog.text
    assert prompt not in caplog.text and "the plan" not in caplog.text and key.digest not in caplog.text
    assert not raw_client.exists(entry_key(cache, key))  # removed: the recomputed answer replaces it
    cache.invalidate_source("doc")  # the race check still holds for the write after the miss
    assert cache.store(key, "stale", ["doc"]) is False
    assert cache.lookup(key, decode=lambda v: v) is None


def test_a_decoder_may_decode_to_none(make_cache: Any) -> None:
    cache = make_cache()
    key = put(cache, 1, "nothing", ["doc"])
    hit = cache.lookup(key, decode=lambda v: None)
    assert hit is not None and hit.value is None  # a value, not a failure: only DecodeError means bad data
    assert cache.stats()["totals"]["bad"] == 0


@pytest.mark.parametrize("backend", STANDALONE, indirect=True)
def test_race_check_survives_a_thousand_pending_lookups(make_cache: Any) -> None:
    cache = make_cache(namespace="docs")
    keys = [cache.key("qa", i) for i in range(1000)]
    for k in keys:
        assert cache.lookup(k) is None
    cache.invalidate_source("doc")
    assert cache.store(keys[0], "stale", ["doc"]) is False  # its own view was evicted: the floor refuses
    assert cache.store(keys[-1], "stale", ["doc"]) is False
