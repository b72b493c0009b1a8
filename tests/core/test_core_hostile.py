"""Hostile or damaged data under the prefix: a miss and a repair, never an exception or a foreign key.

Each test plants the damage with a raw client, then checks that lookups raise nothing and serve nothing
stale, that invalidations still reach every tree, that the damaged tree is repaired (or named in an
`InvalidationError`), that no key outside the prefix changed, and that the cache works again afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import valkey

from valkey_rag_cache import AnswerCache, InvalidationError
from valkey_rag_cache.keys import escape, source_digest

OTHER_TREES = ("aaa", "faqs", "mmm", "zzz")  # healthy trees, on either side of the damaged one in any order


def put(cache: AnswerCache, parts: object, value: object, sources: Any = None) -> Any:
    key = cache.key("qa", parts)
    assert cache.lookup(key) is None
    assert cache.store(key, value, sources)
    assert cache.lookup(key).value == value  # type: ignore[union-attr]
    return key


def read(raw: Any, name: str) -> Any:
    """A key's type, value and TTL, to check that it survives byte for byte."""
    kind = raw.type(name).decode()
    value: Any = {
        "string": raw.get,
        "hash": raw.hgetall,
        "set": lambda k: sorted(raw.smembers(k)),
        "none": lambda k: None,
    }[kind](name)
    ttl = raw.ttl(name)
    return kind, value, ttl if ttl < 0 else 9_000 < ttl <= 10_000  # planted with 10000 s; time passes


def plant_foreign(raw: Any, prefix: str) -> dict[str, Any]:
    """Keys outside the prefix that a stored value could try to name (`victim:` as a group base...)."""
    names = {
        "victim:clock": "h",
        "victim:t:a": "s",
        "victim:stats": "h",
        "victim:nss": "set",
        "victim:e:x": "s",
        f"{prefix}x:clock": "s",
        f"{prefix}x:t:a": "s",
        "x:{docs}:clock": "h",
        "x:{docs}:t:a": "s",
        "{docs}:t:a": "s",
        "foreign": "s",
    }
    for name, kind in names.items():
        if kind == "h":
            raw.hset(name, mapping={"e": "keep", "c": "7", "i": "7"})
        elif kind == "set":
            raw.sadd(name, "keep")
        else:
            raw.set(name, b"keep \xff", ex=10_000)
    return {name: read(raw, name) for name in names}


def assert_unchanged(raw: Any, before: dict[str, Any]) -> None:
    assert {name: read(raw, name) for name in before} == before


def no_errors(*caches: AnswerCache) -> None:
    for c in caches:
        process = c.stats()["process"]
        assert process["errors"] == 0 and process["outages"] == 0 and process["skipped"] == 0, process


def dep_set(cache: AnswerCache, source: str, namespace: str) -> str:
    base = cache.schema.group_base(namespace.split(":")[0])
    return f"{base}d:{source_digest(source)}:{escape(namespace)}"


def damage_clock(field: str, value: str) -> Callable[[Any, AnswerCache], None]:
    return lambda raw, c: raw.hset(c.schema.clock("docs"), field, value)


def replace_with_string(name: Callable[[AnswerCache], str]) -> Callable[[Any, AnswerCache], None]:
    def plant(raw: Any, c: AnswerCache) -> None:
        raw.delete(name(c))
        raw.set(name(c), "not what we wrote")

    return plant


def replace_with_hash(name: Callable[[AnswerCache], str]) -> Callable[[Any, AnswerCache], None]:
    def plant(raw: Any, c: AnswerCache) -> None:
        raw.delete(name(c))
        raw.hset(name(c), "x", "y")

    return plant


DAMAGE: dict[str, Callable[[Any, AnswerCache], None]] = {
    "clock-counter-fraction": damage_clock("c", "1.5"),
    "clock-counter-exponent": damage_clock("c", "1e+14"),
    "clock-counter-huge": damage_clock("c", "9" * 30),
    "clock-invalidations-word": damage_clock("i", "lots"),
    "clock-invalidations-negative": damage_clock("i", "-3"),
    "clock-era-empty": damage_clock("e", ""),
    "clock-not-a-hash": replace_with_string(lambda c: c.schema.clock("docs")),
    "stats-not-a-hash": replace_with_string(lambda c: c.schema.stats("docs")),
    "stats-counter-word": lambda raw, c: raw.hset(c.schema.stats("docs"), "misses:docs:tech", "lots"),
    "stats-counter-overflow": lambda raw, c: raw.hset(
        c.schema.stats("docs"), "misses:docs:tech", str(2**63 - 1)
    ),
    "stats-invalidations-word": lambda raw, c: raw.hset(c.schema.stats("docs"), "invalidations:*", "lots"),
    "namespaces-not-a-set": replace_with_string(lambda c: c.schema.group_base("docs") + "nss"),
    "dependency-set-not-a-set": replace_with_hash(lambda c: dep_set(c, "doc", "docs:tech")),
    "source-token-odd": lambda raw, c: raw.set(
        c.schema.group_base("docs") + "t:" + c.schema.source_suffix("doc"), "x.lots"
    ),
    "source-token-counter-word": lambda raw, c: raw.set(
        c.schema.group_base("docs") + "t:" + c.schema.source_suffix("doc"),
        raw.hget(c.schema.clock("docs"), "e") + b".lots",  # the current era: the write compares its counter
    ),
    "source-token-not-a-string": replace_with_hash(
        lambda c: c.schema.group_base("docs") + "t:" + c.schema.source_suffix("doc")
    ),
    "version-token-odd": lambda raw, c: raw.set(c.schema.group_base("docs") + "t:a", "1e+14.1.5"),
    "version-token-not-a-string": replace_with_hash(lambda c: c.schema.group_base("docs") + "t:a"),
    "namespace-token-not-a-string": replace_with_hash(lambda c: c.schema.group_base("docs") + "t:n:docs"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_in_one_tree_is_a_miss_and_a_repair(
    make_cache: Any, raw_client: Any, prefix: str, damage: str
) -> None:
    docs = make_cache(namespace="docs:tech")
    others = [make_cache(namespace=ns) for ns in OTHER_TREES]
    foreign = plant_foreign(raw_client, prefix)
    by_doc = [put(docs, "q", "d", ["doc"])] + [put(c, "q", c.namespace, ["doc"]) for c in others]
    by_version = [put(docs, "v", "d", ["x"])] + [put(c, "v", c.namespace, ["y"]) for c in others]

    DAMAGE[damage](raw_client, docs)
    docs.dependents("doc")  # listings read the damaged keys without raising
    docs.stats()

    # Invalidations reach every tree, the damaged one included, and raise nothing.
    docs.invalidate_source("doc")
    for cache, key in zip([docs, *others], by_doc, strict=True):
        assert cache.lookup(key) is None, cache.namespace
    docs.invalidate_all()
    for cache, key in zip([docs, *others], by_version, strict=True):
        assert cache.lookup(key) is None, cache.namespace

    # The tree works again: lookups, writes and hits, and every housekeeping call.
    again = put(docs, "again", "d2", ["doc"])
    for c in others:
        put(c, "again", "o2", ["doc"])
    assert docs.dependents("doc") != []
    docs.purge()
    docs.stats()
    assert docs.invalidate_source("doc") == 1 + len(others)
    assert docs.lookup(again) is None
    no_errors(docs, *others)
    assert_unchanged(raw_client, foreign)


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_found_by_lookups_first_is_repaired(
    make_cache: Any, raw_client: Any, prefix: str, damage: str
) -> None:
    docs = make_cache(namespace="docs:tech")
    foreign = plant_foreign(raw_client, prefix)
    key = put(docs, "q", "d", ["doc"])
    DAMAGE[damage](raw_client, docs)
    for _ in range(2):
        hit = docs.lookup(key)
        assert hit is None or hit.value == "d"  # never an exception, never another value
    fresh = docs.key("qa", "fresh")
    assert docs.lookup(fresh) is None
    assert docs.store(fresh, "f", ["doc"])  # repaired: writes are not refused for good
    assert docs.lookup(fresh).value == "f"  # type: ignore[union-attr]
    assert docs.invalidate_source("doc") >= 1
    assert docs.lookup(fresh) is None and docs.lookup(key) is None
    no_errors(docs)
    assert_unchanged(raw_client, foreign)


def test_a_damaged_clock_is_made_anew_with_a_fresh_era(make_cache: Any, raw_client: Any) -> None:
    cache = make_cache(namespace="docs")
    key = put(cache, "q", "a", ["doc"])
    clock = cache.schema.clock("docs")
    era = raw_client.hget(clock, "e")
    raw_client.hset(clock, "c", "1e+14")
    cache.invalidate_source("doc")
    assert raw_client.hget(clock, "e") != era  # no token it issues can equal an old one
    assert int(raw_client.hget(clock, "c")) < 10
    assert cache.lookup(key) is None


def test_a_token_that_is_not_ours_is_replaced_never_compared(make_cache: Any, raw_client: Any) -> None:
    cache = make_cache(namespace="docs")
    put(cache, "q", "a", ["doc"])
    token = cache.schema.group_base("docs") + "t:" + cache.schema.source_suffix("doc")
    era = raw_client.hget(cache.schema.clock("docs"), "e")
    for value in (era + b".lots", era + b".1.5", era + b"." + b"9" * 30, b"x.1e5", era):
        raw_client.set(token, value)
        key = cache.key("qa", value.decode())
        assert cache.lookup(key) is None
        cache.invalidate_source("other")  # between the lookup and the write: the write checks the tokens
        assert not cache.store(key, "b", ["doc"])  # a token not ours counts as missing: refused, no error
        assert cache.lookup(key) is None
        assert cache.store(key, "b", ["doc"])  # then replaced with one of ours
        assert cache.lookup(key).value == "b"  # type: ignore[union-attr]
        assert raw_client.get(token) != value
    no_errors(cache)


def test_a_write_that_saw_a_clock_later_damaged_is_refused(make_cache: Any, raw_client: Any) -> None:
    cache = make_cache(namespace="docs")
    key = cache.key("qa", "q")
    assert cache.lookup(key) is None
    seen = cache.seen(key)
    raw_client.hset(cache.schema.clock("docs"), "i", "lots")
    cache.invalidate_source("doc")
    assert not cache.store(key, "stale", ["doc"], seen=seen)
    assert cache.lookup(key) is None


# -- the index of groups ----


BAD_MEMBERS = [
    "victim:",
    "{prefix}x:",
    "{prefix}:{{docs}}",
    "{prefix}:{{docs}}:e:",
    "{prefix}:{{do}}cs}}:",
    "{prefix}:{{}}:",
    "{prefix}:{{%41}}:",
    "{prefix}:{{d%c3%a9}}:",
    "{prefix}:{{%FF}}:",
    "x:{{docs}}:",
    "{{docs}}:",
]


def test_members_of_the_index_of_groups_are_checked(make_cache: Any, raw_client: Any, prefix: str) -> None:
    docs, faqs = make_cache(namespace="docs"), make_cache(namespace="faqs")
    foreign = plant_foreign(raw_client, prefix)
    kd, kf = put(docs, "q", "d", ["doc"]), put(faqs, "q", "f", ["doc"])
    groups = docs.schema.groups
    bad = [m.format(prefix=prefix) for m in BAD_MEMBERS]
    raw_client.sadd(groups, *bad, b"\xff\xfe")

    assert docs.stats()["totals"]["writes"] == 2
    assert len(docs.dependents("doc")) == 2
    assert docs.invalidate_source("doc") == 2
    assert docs.lookup(kd) is None and faqs.lookup(kf) is None
    kd, kf = put(docs, "q", "d", ["doc"]), put(faqs, "q", "f", ["doc"])
    raw_client.sadd(groups, *bad)
    docs.invalidate_all()
    assert docs.lookup(kd) is None and faqs.lookup(kf) is None

    assert_unchanged(raw_client, foreign)
    members = {m.decode() for m in raw_client.smembers(groups)}
    assert members == {docs.schema.group_base("docs"), docs.schema.group_base("faqs")}  # the rest removed
    assert all(k.startswith(prefix + ":") for k in keys_under(raw_client, prefix)[1])
    no_errors(docs, faqs)


def test_an_index_of_groups_of_the_wrong_type_is_rebuilt(
    make_cache: Any, raw_client: Any, prefix: str
) -> None:
    docs, faqs = make_cache(namespace="docs"), make_cache(namespace="faqs")
    foreign = plant_foreign(raw_client, prefix)
    kd, kf = put(docs, "q", "d", ["doc"]), put(faqs, "q", "f", ["doc"])
    groups = docs.schema.groups
    raw_client.delete(groups)
    raw_client.set(groups, "not a set")

    docs.invalidate_all()  # every tree is still reached (rebuilt from the clocks, or retired on next use)
    assert docs.lookup(kd) is None and faqs.lookup(kf) is None
    kd, kf = put(docs, "q", "d", ["doc"]), put(faqs, "q", "f", ["doc"])
    assert raw_client.type(groups) == b"set"
    assert docs.invalidate_source("doc") == 2
    assert docs.lookup(kd) is None and faqs.lookup(kf) is None

    raw_client.delete(groups)
    raw_client.hset(groups, "x", "y")
    kn = docs.key("qa", "new")
    assert docs.lookup(kn) is None  # lookups and writes repair it too
    assert docs.store(kn, "n", ["doc"])
    assert docs.lookup(kn).value == "n"  # type: ignore[union-attr]
    assert len(docs.dependents("doc")) == 1
    docs.invalidate_all()
    assert docs.lookup(kn) is None
    no_errors(docs, faqs)
    assert_unchanged(raw_client, foreign)


def keys_under(raw: Any, prefix: str) -> tuple[list[str], list[str]]:
    """(all keys, the keys under the prefix)."""
    if hasattr(raw, "get_primaries"):
        names = [k for node in raw.get_primaries() for k in raw.get_valkey_connection(node).scan_iter()]
    else:
        names = list(raw.scan_iter())
    text = sorted(k.decode("utf-8", "replace") for k in names)
    return text, [k for k in text if k.startswith(prefix + ":")]


# -- purge and stats ----


def test_purge_deletes_wrong_typed_entries_and_dependency_sets(make_cache: Any, raw_client: Any) -> None:
    cache = make_cache(namespace="docs")
    key = put(cache, "q", "a", ["doc"])
    live = put(cache, "live", "b", ["other"])
    entry, deps = cache.schema.entry(key), dep_set(cache, "doc", "docs")
    raw_client.delete(entry, deps)
    raw_client.sadd(entry, "not an entry")
    raw_client.set(deps, "not a set")
    assert cache.purge() >= 2
    assert not raw_client.exists(entry) and not raw_client.exists(deps)
    assert cache.lookup(live).value == "b"  # type: ignore[union-attr]
    no_errors(cache)


def test_stats_skip_and_count_what_they_cannot_read(make_cache: Any, raw_client: Any) -> None:
    docs, faqs = make_cache(namespace="docs"), make_cache(namespace="faqs")
    put(docs, "q", "d")
    put(faqs, "q", "f")
    stats = docs.schema.stats("docs")
    raw_client.hset(stats, mapping={"hits:docs": "lots", b"\xff\xfe:docs": 3, "nonsense": 1, "misses:": 2})
    report = docs.stats()
    assert report["unreadable"] == 4
    assert report["namespaces"]["faqs"]["writes"] == 1 and report["namespaces"]["docs"]["writes"] == 1
    raw_client.delete(stats)
    raw_client.set(stats, "not a hash")
    report = docs.stats()
    assert report["unreadable"] == 1 and report["namespaces"]["faqs"]["writes"] == 1
    no_errors(docs, faqs)  # a failing stats() never marks the backend down
    key = docs.key("qa", "after")
    assert docs.lookup(key) is None and docs.store(key, "x")  # and caching goes on
    assert docs.lookup(key).value == "x"  # type: ignore[union-attr]
    assert docs.stats()["namespaces"]["docs"]["hits"] == 1  # the scripts made the counters anew


@pytest.mark.fake
def test_only_errors_of_the_backend_trip_the_back_off() -> None:
    from valkey.exceptions import (
        BusyLoadingError,
        ClusterDownError,
        NoPermissionError,
        NoScriptError,
        OutOfMemoryError,
        ReadOnlyError,
        ResponseError,
        TimeoutError,
    )

    from valkey_rag_cache.health import is_backend_error

    down = [ConnectionRefusedError(), TimeoutError(), BusyLoadingError(), ReadOnlyError(), OutOfMemoryError()]
    down += [
        ClusterDownError("CLUSTERDOWN"),
        ResponseError("BUSY running a script"),
        ResponseError("MASTERDOWN"),
    ]
    assert all(is_backend_error(e) for e in down)
    answered = [
        ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ResponseError("ERR hash value is not an integer"),
        ResponseError("ERR Error running script: user_script:1: attempt to compare nil with number"),
        NoPermissionError("this user has no permissions to run the 'script|load' command"),
        NoScriptError("No matching script"),
    ]
    assert not any(is_backend_error(e) for e in answered)


# -- source ids, namespaces, prefixes ----


def test_a_bare_string_is_one_source_id(make_cache: Any) -> None:
    cache = make_cache(namespace="docs")
    key = put(cache, "q", "a", ["doc-1"])
    other = put(cache, "o", "b", ["d"])  # "d" is one of the characters of "doc-1"
    assert cache.invalidate_sources("doc-1") == 1
    assert cache.lookup(key) is None
    assert cache.lookup(other).value == "b"  # type: ignore[union-attr]
    key = put(cache, "q", "a", ["doc-1"])
    assert asyncio.run(cache.ainvalidate_sources("doc-1")) == 1
    assert cache.lookup(key) is None
    with pytest.raises(ValueError):
        cache.invalidate_sources("")  # nothing that looks like success
    with pytest.raises(TypeError):
        cache.invalidate_sources(b"doc-1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        cache.invalidate_namespace("")


@pytest.mark.fake
def test_adapters_treat_a_bare_string_as_one_source_id() -> None:
    import fakeredis

    from langchain_valkey_cache import ValkeyCache as LangChainCache
    from llamaindex_valkey_cache import LlamaIndexCache

    server = fakeredis.FakeServer()
    core = AnswerCache(client=fakeredis.FakeValkey(server=server), namespace="docs")
    for adapter in (LangChainCache(core=core), LlamaIndexCache(core=core)):
        key = put(core, "q", "a", ["doc-1"])
        assert adapter.invalidate_sources("doc-1") == 1
        assert core.lookup(key) is None
        key = put(core, "q", "a", ["doc-1"])
        assert asyncio.run(adapter.ainvalidate_sources("doc-1")) == 1
        assert core.lookup(key) is None


@pytest.mark.fake
@pytest.mark.parametrize("namespace", ["docs\ud800", "\udc80", "docs:tech\udfff", "a:\ud83d"])
def test_a_namespace_that_is_not_valid_unicode_is_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        AnswerCache(namespace=namespace)
    cache = AnswerCache(namespace="docs")
    with pytest.raises(ValueError, match="not valid Unicode"):
        cache.key("qa", "q", namespace=namespace)
    with pytest.raises(ValueError, match="not valid Unicode"):
        cache.invalidate_namespace(namespace)
    with pytest.raises(ValueError):
        AnswerCache(prefix="llm\ud800cache")
    assert AnswerCache(namespace="docs:\U0001f600 é").namespace == "docs:\U0001f600 é"  # real text is fine


@pytest.mark.fake
def test_a_damaged_clock_never_reaches_the_model_call() -> None:
    import fakeredis
    from langchain_core.language_models import FakeListChatModel

    from langchain_valkey_cache import ValkeyCache

    raw = fakeredis.FakeValkey()
    cache = ValkeyCache(client=raw, namespace="docs")
    model = FakeListChatModel(responses=["one", "two", "three"], cache=cache)
    assert model.invoke("q").content == "one"
    for value in ("1.5", "1e+14"):
        raw.hset(cache.core.schema.clock("docs"), "c", value)
        model.invoke("q")  # a hit or a miss, never a ValueError
    raw.hset(cache.core.schema.clock("docs"), "i", "lots")
    model.invoke("other")
    assert cache.stats()["process"]["errors"] == 0


# -- restricted users on a real server ----


@pytest.fixture
def acl_user(standalone_url: str) -> Any:
    """Makes ACL users on the session's standalone server; removes them afterwards."""
    admin = valkey.Valkey.from_url(standalone_url)
    made: list[str] = []

    def make(*rules: str) -> str:
        name, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *rules)
        made.append(name)
        port = admin.connection_pool.connection_kwargs["port"]
        return f"valkey://{name}:{password}@127.0.0.1:{port}/0"

    yield make
    for name in made:
        admin.execute_command("ACL", "DELUSER", name)


@pytest.mark.standalone
def test_an_acl_without_script_load_falls_back_to_eval(
    standalone_url: str, prefix: str, acl_user: Any
) -> None:
    url = acl_user(f"~{prefix}:*", "+@all", "-script|load")
    admin = valkey.Valkey.from_url(standalone_url)

    def exercise() -> None:
        cache = AnswerCache(url, prefix=prefix, namespace="docs")
        admin.script_flush()  # the scripts are unknown to the server: EVALSHA answers NOSCRIPT
        key = put(cache, "q", "a", ["doc"])
        assert cache.dependents("doc") == [cache.schema.entry(key)]
        admin.script_flush()
        assert cache.invalidate_source("doc") == 1
        admin.script_flush()
        cache.invalidate_all()
        cache.invalidate_namespace("docs")
        assert cache.lookup(key) is None
        no_errors(cache)

    async def aexercise() -> None:
        cache = AnswerCache(url, prefix=prefix, namespace="docs")
        key = cache.key("qa", "aq")
        admin.script_flush()
        assert await cache.alookup(key) is None
        assert await cache.astore(key, "a", ["doc"])
        assert (await cache.alookup(key)).value == "a"  # type: ignore[union-attr]
        admin.script_flush()
        assert await cache.ainvalidate_source("doc") == 1
        admin.script_flush()
        await cache.ainvalidate_all()
        assert await cache.alookup(key) is None
        no_errors(cache)

    exercise()
    asyncio.run(aexercise())


@pytest.mark.standalone
def test_an_acl_without_any_way_to_load_scripts_degrades(
    standalone_url: str, prefix: str, acl_user: Any
) -> None:
    url = acl_user(f"~{prefix}:*", "+@all", "-script|load", "-eval", "-eval_ro")
    admin = valkey.Valkey.from_url(standalone_url)
    cache = AnswerCache(url, prefix=prefix, namespace="docs")
    admin.script_flush()
    key = cache.key("qa", "q")
    assert cache.lookup(key) is None  # a miss, never an exception
    assert not cache.store(key, "a", ["doc"])
    with pytest.raises(InvalidationError):
        cache.invalidate_source("doc")
    with pytest.raises(InvalidationError):
        cache.invalidate_all()
    assert cache.health.snapshot()["outages"] == 0  # refused commands are no outage


@pytest.mark.standalone
def test_a_tree_that_can_be_neither_invalidated_nor_retired_is_named(
    standalone_url: str, prefix: str, acl_user: Any
) -> None:
    writer = AnswerCache(standalone_url, prefix=prefix, namespace="open")
    locked = AnswerCache(standalone_url, prefix=prefix, namespace="locked")
    ko, kl = put(writer, "q", "o", ["doc"]), put(locked, "q", "l", ["doc"])
    # A user who may write every tree but `locked`, which it may only read.
    url = acl_user(f"~{prefix}:groups", f"~{prefix}:{{open}}:*", f"%R~{prefix}:{{locked}}:*", "+@all")
    restricted = AnswerCache(url, prefix=prefix, namespace="open")
    with pytest.raises(InvalidationError, match="locked") as err:
        restricted.invalidate_source("doc")
    assert "open" not in str(err.value).replace(prefix, "")
    assert writer.lookup(ko) is None  # the other trees were invalidated
    assert locked.lookup(kl).value == "l"  # type: ignore[union-attr]  # as the error says
    with pytest.raises(InvalidationError, match="locked"):
        restricted.invalidate_all()
    assert restricted.health.snapshot()["outages"] == 0
