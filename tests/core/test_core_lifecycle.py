"""Namespace lifecycle: drop_namespace, purge reclaiming idle trees, per-namespace invalidation counts and
resets; fakeredis, a real standalone Valkey and a real 3-primary cluster."""

from __future__ import annotations

from typing import Any

import pytest
from test_core_contract import keys_under

from valkey_rag_cache import AnswerCache, Source


def fill(
    cache: AnswerCache, namespace: str, n: int = 2, sources: tuple[str, ...] = ("kb/a.md",)
) -> list[Any]:
    keys = []
    for i in range(n):
        key = cache.key("qa", i, namespace=namespace)
        assert cache.lookup(key) is None
        assert cache.store(key, f"answer {i}", [Source(s, "documentation") for s in sources])
        keys.append(key)
    return keys


def untimed(raw: Any, prefix: str) -> list[str]:
    return [k for k in keys_under(raw, prefix) if raw.ttl(k) == -1]


TENANTS = 100


def test_clear_leaves_bookkeeping_that_purge_reclaims_once_idle(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    cache = make_cache()
    for t in range(TENANTS):
        fill(cache, f"tenant-{t}:support", n=1)
    for t in range(TENANTS):
        cache.clear(f"tenant-{t}:support")
    # What the issue measured: clocks, counters, namespaces sets, version and namespace tokens, the index.
    assert len(untimed(raw_client, prefix)) >= 5 * TENANTS
    cache.purge(idle_after=0)  # the first purge marks the empty trees ...
    assert len(untimed(raw_client, prefix)) >= 5 * TENANTS
    cache.purge(idle_after=0)  # ... the next one, with no activity in between, drops them
    assert keys_under(raw_client, prefix) == []


def test_drop_namespace_leaves_no_key_behind(make_cache: Any, raw_client: Any, prefix: str) -> None:
    cache = make_cache()
    for t in range(TENANTS):
        fill(cache, f"tenant-{t}:support", n=1, sources=("kb/a.md", f"kb/{t}.md"))
    cache.invalidate_source("kb/a.md")
    assert keys_under(raw_client, prefix)
    for t in range(TENANTS):
        cache.drop_namespace(f"tenant-{t}")
    assert keys_under(raw_client, prefix) == []


def test_purge_keeps_trees_that_hold_entries_or_saw_activity(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    cache = make_cache()
    (held,) = fill(cache, "busy", n=1)
    fill(cache, "quiet", n=1)
    cache.clear("quiet")
    cache.purge(idle_after=0)
    cache.lookup(cache.key("qa", "anything", namespace="quiet"))  # activity between the two purges
    cache.purge(idle_after=0)
    assert any("{quiet}" in k for k in keys_under(raw_client, prefix))
    assert cache.lookup(held) is not None
    cache.purge(idle_after=3600)  # idle, but not for long enough
    cache.purge(idle_after=3600)
    assert any("{quiet}" in k for k in keys_under(raw_client, prefix))
    cache.purge(idle_after=0)
    assert not any("{quiet}" in k for k in keys_under(raw_client, prefix))
    assert cache.lookup(held) is not None  # a tree with entries is never reclaimed
    assert cache.purge(idle_after=None) == 0


def test_drop_of_a_sub_namespace_spares_its_parent_and_siblings(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    cache = make_cache()
    tech = fill(cache, "docs:technical", sources=("kb/a.md",))
    deep = fill(cache, "docs:technical:api", sources=("kb/a.md",))
    support = fill(cache, "docs:support", sources=("kb/a.md",))
    top = fill(cache, "docs", sources=("kb/a.md",))
    assert cache.drop_namespace("docs:technical") >= 4
    left = keys_under(raw_client, prefix)
    assert not [k for k in left if "docs:technical" in k]
    stats = cache.stats()["namespaces"]
    assert "docs:technical" not in stats and "docs:technical:api" not in stats
    assert stats["docs:support"]["writes"] == 2
    assert len(cache.dependents("kb/a.md")) == 4  # docs and docs:support
    assert all(cache.lookup(k) is None for k in tech + deep)
    assert all(cache.lookup(k) is not None for k in support + top)


@pytest.mark.parametrize("namespace", ["tenant", "tenant:support"])
def test_a_write_whose_lookup_preceded_the_drop_is_refused(make_cache: Any, namespace: str) -> None:
    writer, admin = make_cache(namespace=namespace), make_cache()
    (old,) = fill(writer, namespace, n=1)
    pending = writer.key("qa", "computed while the drop ran")
    assert writer.lookup(pending) is None  # the miss: an answer is being computed
    seen = writer.seen(pending)
    admin.drop_namespace(namespace)
    assert writer.store(pending, "built before the drop", seen=seen) is False
    assert writer.lookup(pending) is None
    assert writer.lookup(old) is None
    # Writes that start after the drop work again.
    assert writer.lookup(pending) is None
    assert writer.store(pending, "fresh")
    assert writer.lookup(pending).value == "fresh"


@pytest.mark.parametrize("namespace", ["tenant", "tenant:support"])
def test_an_entry_the_drop_missed_is_never_served(make_cache: Any, raw_client: Any, namespace: str) -> None:
    # The worst case of a drop racing a writer: an entry written before the drop outlives the deletion
    # (restored here byte for byte); it must still be a miss.
    cache = make_cache(namespace=namespace)
    (key,) = fill(cache, namespace, n=1)
    entry = cache.schema.entry(key)
    body, ttl = raw_client.get(entry), raw_client.ttl(entry)
    cache.drop_namespace(namespace)
    raw_client.set(entry, body, ex=ttl)
    assert cache.lookup(key) is None  # (a cluster's first lookup registers the tree anew: a plain miss)
    assert cache.lookup(key) is None
    assert raw_client.get(entry) is None  # found stale and deleted


def test_source_invalidations_count_in_each_namespace_they_retired_answers_in(make_cache: Any) -> None:
    cache = make_cache()
    fill(cache, "support", sources=("kb/refunds.md",))
    fill(cache, "billing:eu", sources=("kb/refunds.md", "kb/vat.md"))
    fill(cache, "hr", sources=("kb/leave.md",))
    assert cache.invalidate_source("kb/refunds.md") == 4
    stats = cache.stats()["namespaces"]
    assert stats["support"]["invalidations"] == 1
    assert stats["billing:eu"]["invalidations"] == 1
    assert stats["hr"]["invalidations"] == 0
    assert "*" not in stats
    cache.invalidate_all()
    stats = cache.stats()["namespaces"]
    assert [stats[ns]["invalidations"] for ns in ("support", "billing:eu", "hr")] == [2, 2, 1]
    assert "*" not in stats


def test_stats_reset_per_namespace_tree(make_cache: Any) -> None:
    cache = make_cache()
    for ns in ("docs", "docs:technical", "docs:support", "faqs"):
        fill(cache, ns, n=1)
    cache.reset_stats("docs:technical")
    stats = cache.stats()["namespaces"]
    assert "docs:technical" not in stats and stats["docs:support"]["writes"] == 1
    cache.reset_stats("docs")
    assert set(cache.stats()["namespaces"]) == {"faqs"}
    cache.reset_stats()
    assert cache.stats()["namespaces"] == {}


async def test_async_drop_and_reset(make_cache: Any) -> None:
    cache = make_cache(namespace="tenant:support")
    if make_cache.backend == "fake":
        cache = AnswerCache(
            client=make_cache.fake.aio(), prefix=cache.schema.prefix, namespace="tenant:support"
        )
    key = cache.key("qa", 1)
    assert await cache.alookup(key) is None
    assert await cache.astore(key, "a", ["kb/a.md"])
    assert await cache.adrop_namespace("tenant") >= 3
    assert await cache.alookup(key) is None
    await cache.areset_stats()
    assert (await cache.astats())["namespaces"] == {}


def test_a_confined_cache_drops_and_reclaims_its_own_tree_only(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    tenant = make_cache(namespace="tenant-a:support", confined=True)
    other = make_cache(namespace="tenant-b")
    (mine,) = fill(tenant, "tenant-a:support", n=1)
    (theirs,) = fill(other, "tenant-b", n=1)
    with pytest.raises(ValueError, match="confined"):
        tenant.drop_namespace("tenant-b")
    pending = tenant.key("qa", "pending")
    assert tenant.lookup(pending) is None
    assert tenant.drop_namespace("tenant-a") >= 3
    assert not [k for k in keys_under(raw_client, prefix) if "{tenant-a}" in k]
    assert tenant.store(pending, "built before the drop") is False
    assert tenant.lookup(mine) is None
    assert other.lookup(theirs) is not None
    tenant.clear()
    tenant.purge(idle_after=0)
    tenant.purge(idle_after=0)
    assert not [k for k in keys_under(raw_client, prefix) if "{tenant-a}" in k]
    assert other.lookup(theirs) is not None


@pytest.mark.fake
def test_the_adapters_expose_drop_reset_and_purge_options() -> None:
    import fakeredis
    from langchain_core.outputs import Generation

    from langchain_valkey_cache import ValkeyCache as LangChainCache
    from llamaindex_valkey_cache import LlamaIndexCache

    server = fakeredis.FakeServer()
    lc = LangChainCache(client=fakeredis.FakeValkey(server=server), namespace="tenant:lc")
    li = LlamaIndexCache(client=fakeredis.FakeValkey(server=server), namespace="tenant:li")
    lc.update("prompt", "llm", [Generation(text="answer")])
    assert lc.lookup("prompt", "llm") is not None
    li.reset_stats("tenant:lc")
    assert "tenant:lc" not in li.stats()["namespaces"]
    assert li.drop_namespace("tenant") >= 1  # a tree both adapters' caches live in
    assert lc.lookup("prompt", "llm") is None
    assert li.purge(idle_after=None) == 0


def test_purge_reclaims_idle_sub_namespaces_of_a_tree_in_use(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    cache = make_cache()
    (live,) = fill(cache, "app:live", n=1)
    for u in range(30):
        fill(cache, f"app:user-{u}", n=1)
        cache.clear(f"app:user-{u}")
    (kept,) = fill(cache, "app:user-kept", n=1)
    cache.clear("app:user-kept")
    per_user = [k for k in keys_under(raw_client, prefix) if "user-" in k]
    assert len(per_user) >= 30  # their namespace tokens, without a TTL
    cache.purge(idle_after=0)
    cache.lookup(kept)  # activity in one of them between the two purges
    cache.purge(idle_after=0)
    left = [k for k in keys_under(raw_client, prefix) if "user-" in k]
    assert left and all("user-kept" in k for k in left)
    assert cache.lookup(live) is not None
    assert cache.stats()["namespaces"]["app:live"]["hits"] >= 1
