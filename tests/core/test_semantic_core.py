"""Semantic matching in the core: exact partitions, no stale or foreign hit, the guard, bad input.

Runs against fakeredis, a real standalone Valkey and a real 3-primary cluster (the `make_cache` fixture),
with embeddings of known similarities (`semantic_fakes`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Any

import pytest
from semantic_fakes import (
    PRICE_30,
    PRICE_60,
    REFUND,
    REFUND_FAR,
    REFUND_LOOSE,
    REFUND_NEGATED,
    REFUND_OTHER_PRODUCT,
    REFUND_PARAPHRASE,
    UNRELATED,
    Counter,
    embed,
)

from valkey_rag_cache import AnswerCache
from valkey_rag_cache.semantic import LookalikeGuard, MirrorIndex, SemanticCache

PART = {"model": "m-1", "tools": []}


def semantic(cache: AnswerCache, **kw: Any) -> SemanticCache:
    """A semantic cache with its own mirrors, as another process would have."""
    kw.setdefault("index", MirrorIndex())
    kw.setdefault("threshold", 0.9)
    return SemanticCache(cache, kw.pop("embed", embed), **kw)


def put(sem: SemanticCache, question: str, value: Any, partition: Any = PART, **kw: Any) -> Any:
    q = sem.query("qa", question, partition)
    assert sem.lookup(q) is None
    assert sem.store(q, value, **kw)
    return q


def ask(sem: SemanticCache, question: str, partition: Any = PART, namespace: str | None = None) -> Any:
    return sem.lookup(sem.query("qa", question, partition, namespace))


# -- matching ----


def test_a_similar_question_is_served_and_an_unrelated_one_is_not(make_cache: Any) -> None:
    sem = semantic(make_cache(namespace="support"))
    put(sem, REFUND, "30 days.", sources=["kb/refunds.md"])
    hit = ask(sem, REFUND_PARAPHRASE)
    assert hit is not None and hit.value == "30 days." and not hit.exact
    assert hit.question == REFUND and math.isclose(hit.similarity, 0.95, abs_tol=1e-4)
    assert hit.hit.sources == ("kb/refunds.md",)
    assert ask(sem, UNRELATED) is None
    assert ask(sem, REFUND_FAR) is None  # 0.80 < 0.9


def test_an_exact_match_wins_over_a_more_similar_semantic_one(make_cache: Any) -> None:
    sem = semantic(make_cache())
    put(sem, REFUND, "answer to the refund window")
    q = sem.query("qa", REFUND_PARAPHRASE, PART)
    assert sem.lookup(q).value == "answer to the refund window"  # semantic, before its own entry exists
    assert sem.store(q, "answer to the refund period")
    hit = ask(sem, REFUND_PARAPHRASE)
    assert hit.exact and hit.similarity == 1.0 and hit.value == "answer to the refund period"


def test_a_vector_written_by_one_process_is_matched_by_another_on_its_next_lookup(make_cache: Any) -> None:
    writer, reader = semantic(make_cache()), semantic(make_cache())
    assert ask(reader, REFUND_PARAPHRASE) is None  # the reader's mirror exists, and is empty
    put(writer, REFUND, "30 days.")
    assert ask(reader, REFUND_PARAPHRASE).value == "30 days."  # caught up from the log


# -- partitions are exact ----


@pytest.mark.parametrize(
    "other",
    [
        {"model": "m-2", "tools": []},  # another model
        {"model": "m-1", "tools": ["lookup_order"]},  # other bound tools
        {"model": "m-1", "tools": [], "filters": {"tenant": "b"}},  # another filter
    ],
)
def test_no_semantic_hit_across_partitions_even_for_the_very_same_question(
    make_cache: Any, other: Any
) -> None:
    sem = semantic(make_cache())
    put(sem, REFUND, "30 days.")
    assert ask(sem, REFUND, other) is None  # similarity 1.0, another partition
    assert ask(sem, REFUND_PARAPHRASE, other) is None


def test_no_semantic_hit_across_tenants_namespaces(make_cache: Any) -> None:
    a = semantic(make_cache(namespace="tenant-a:support"))
    b = semantic(make_cache(namespace="tenant-b:support"))
    put(a, REFUND, "tenant a's answer")
    assert ask(b, REFUND) is None and ask(b, REFUND_PARAPHRASE) is None
    assert ask(a, REFUND_PARAPHRASE, namespace="tenant-a:other") is None


def test_a_forged_index_record_cannot_bring_a_foreign_hit(make_cache: Any, raw_client: Any) -> None:
    sem = semantic(make_cache())
    other = {"model": "m-2", "tools": []}
    put(sem, REFUND, "the other model's answer", partition=other)
    # Copy partition m-2's vector records into partition m-1's index, as a bug or an attacker might.
    q_other, q_mine = sem.query("qa", REFUND, other), sem.query("qa", UNRELATED, PART)
    raw_client.hset(q_mine.part.vectors_key, mapping=raw_client.hgetall(q_other.part.vectors_key))
    raw_client.delete(q_mine.part.log_key)
    assert ask(semantic(sem.cache), REFUND_PARAPHRASE) is None  # candidate keys derive from m-1's partition


# -- no stale hit ----


@pytest.mark.parametrize("how", ["source", "namespace", "parent namespace", "version"])
def test_invalidation_retires_semantic_entries_in_every_process(make_cache: Any, how: str) -> None:
    cache = make_cache(namespace="docs:technical")
    writer, reader = semantic(cache), semantic(make_cache(namespace="docs:technical"))
    put(writer, REFUND, "30 days.", sources=["kb/refunds.md"])
    assert ask(reader, REFUND_PARAPHRASE).value == "30 days."  # the reader's mirror holds the vector
    if how == "source":
        cache.invalidate_source("kb/refunds.md")
    elif how == "namespace":
        cache.invalidate_namespace("docs:technical")
    elif how == "parent namespace":
        cache.invalidate_namespace("docs")
    else:
        cache.invalidate_all()
    assert ask(reader, REFUND_PARAPHRASE) is None
    assert ask(writer, REFUND_PARAPHRASE) is None


def test_an_expired_or_evicted_entry_is_never_served_semantically(make_cache: Any, raw_client: Any) -> None:
    sem = semantic(make_cache())
    q = put(sem, REFUND, "30 days.")
    assert ask(sem, REFUND_PARAPHRASE) is not None
    raw_client.pexpire(sem.cache.schema.entry(q.key), 1)  # its TTL runs out
    time.sleep(0.05)
    assert ask(sem, REFUND_PARAPHRASE) is None
    q = put(sem, REFUND, "again")
    raw_client.delete(sem.cache.schema.entry(q.key))  # evicted
    assert ask(sem, REFUND_PARAPHRASE) is None


def test_a_lost_index_costs_misses_and_is_rebuilt(make_cache: Any, raw_client: Any) -> None:
    writer, reader = semantic(make_cache()), semantic(make_cache())
    q = put(writer, REFUND, "30 days.")
    assert ask(reader, REFUND_PARAPHRASE) is not None
    raw_client.delete(q.part.vectors_key, q.part.log_key)  # the index is lost (eviction, a flush)
    assert ask(reader, REFUND_PARAPHRASE) is None  # rebuilt from nothing: a miss, no error
    assert ask(reader, REFUND).value == "30 days."  # the exact entry is still served
    put(writer, PRICE_30, "yes")
    assert ask(reader, "Is the refund window 30 days?").exact


def test_a_trimmed_log_makes_the_mirror_rebuild_from_the_vectors(make_cache: Any, raw_client: Any) -> None:
    writer, reader = semantic(make_cache()), semantic(make_cache())
    put(writer, PRICE_30, "yes")
    assert ask(reader, UNRELATED) is None  # the reader's mirror has applied the log up to PRICE_30
    q = put(writer, REFUND, "30 days.")
    raw_client.xtrim(q.part.log_key, 0)  # the log lost the items the reader had not read
    raw_client.xadd(q.part.log_key, {"o": "+", "d": "unrelated"})
    assert ask(reader, REFUND_PARAPHRASE).value == "30 days."


def test_the_write_after_a_semantic_miss_is_refused_when_an_invalidation_overtook_it(make_cache: Any) -> None:
    cache = make_cache()
    sem = semantic(cache)
    q = sem.query("qa", REFUND, PART)
    assert sem.lookup(q) is None
    cache.invalidate_source("kb/refunds.md")  # lands while the answer is computed from the old text
    assert not sem.store(q, "stale answer", sources=["kb/refunds.md"])
    assert ask(sem, REFUND) is None and ask(sem, REFUND_PARAPHRASE) is None


async def test_async_twins_match_and_validate(make_cache: Any) -> None:
    cache = make_cache()
    sem = semantic(cache)
    q = sem.query("qa", REFUND, PART)
    assert await sem.alookup(q) is None
    assert await sem.astore(q, "30 days.", sources=["kb/refunds.md"])
    hit = await sem.alookup(sem.query("qa", REFUND_PARAPHRASE, PART))
    assert hit is not None and hit.value == "30 days."
    await cache.ainvalidate_source("kb/refunds.md")
    assert await sem.alookup(sem.query("qa", REFUND_PARAPHRASE, PART)) is None


# -- look-alike questions ----


@pytest.mark.parametrize("lookalike", [REFUND_NEGATED, REFUND_OTHER_PRODUCT])
def test_the_guard_refuses_lookalikes_above_the_threshold(make_cache: Any, lookalike: str) -> None:
    cache = make_cache()
    put(semantic(cache), REFUND, "30 days.")
    assert ask(semantic(cache), lookalike) is None
    assert ask(semantic(cache, guard=None), lookalike).value == "30 days."  # what the guard refused


def test_the_guard_refuses_another_number(make_cache: Any) -> None:
    cache = make_cache()
    put(semantic(cache), PRICE_30, "yes")
    assert ask(semantic(cache), PRICE_60) is None
    assert ask(semantic(cache, guard=None), PRICE_60).value == "yes"


def test_the_verifier_is_asked_only_near_the_threshold_and_decides_there(make_cache: Any) -> None:
    cache = make_cache()
    asked: list[tuple[str, str]] = []
    answer = {"value": False}

    def verifier(new: str, cached: str) -> bool:
        asked.append((new, cached))
        return answer["value"]

    sem = semantic(cache, verifier=verifier, band=0.04)
    put(sem, REFUND, "30 days.")
    assert ask(sem, REFUND_PARAPHRASE).value == "30 days."  # 0.95 >= 0.9 + 0.04: served without asking
    assert ask(sem, REFUND_FAR) is None  # 0.80 < 0.9 - 0.04: not asked either
    assert asked == []
    assert ask(sem, REFUND_LOOSE) is None  # 0.87: in the band, the verifier said no
    assert asked == [(REFUND_LOOSE, REFUND)]
    answer["value"] = True
    assert ask(sem, REFUND_LOOSE).value == "30 days."
    assert ask(semantic(cache), REFUND_LOOSE) is None  # without a verifier, 0.87 < 0.9


async def test_an_async_verifier_is_awaited(make_cache: Any) -> None:
    async def verifier(new: str, cached: str) -> bool:
        await asyncio.sleep(0)
        return True

    sem = semantic(make_cache(), verifier=verifier)
    q = sem.query("qa", REFUND, PART)
    await sem.alookup(q)
    await sem.astore(q, "30 days.")
    assert (await sem.alookup(sem.query("qa", REFUND_LOOSE, PART))).value == "30 days."


# -- bad input: a miss and a warning, never an exception ----


def _raise(text: str) -> Any:
    raise RuntimeError("the embedding service is down")


def _slow(text: str) -> Any:
    time.sleep(1.0)
    return embed(text)


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (lambda t: embed(t)[:10], "embedding dimension"),
        (lambda t: [math.nan] * 64, "embedding not finite"),
        (lambda t: [math.inf] + [0.0] * 63, "embedding not finite"),
        (lambda t: [0.0] * 64, "embedding zero"),
        (lambda t: "not a vector", "embedding shape"),
        (_raise, "embedding failed"),
        (_slow, "embedding timed out"),
    ],
)
def test_bad_embeddings_are_a_miss_and_one_warning(
    make_cache: Any, behaviour: Any, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache()
    put(semantic(cache), REFUND, "30 days.")
    bad = Counter(lambda t: embed(t) if t == REFUND else behaviour(t))
    sem = semantic(cache, embed=bad, dimension=64, embed_timeout=0.2)
    with caplog.at_level(logging.WARNING, logger="valkey_rag_cache"):
        assert ask(sem, REFUND_PARAPHRASE) is None
        assert ask(sem, REFUND_LOOSE) is None
        q = sem.query("qa", UNRELATED, PART)
        assert sem.lookup(q) is None
        assert sem.store(q, "a joke")  # stored for exact matching, without a vector
    assert sem.problems == {kind: 3}
    assert len([r for r in caplog.records if kind in r.getMessage()]) == 1
    assert ask(sem, UNRELATED).exact  # the exact entry works


async def test_bad_embeddings_are_a_miss_in_async_code_too(make_cache: Any) -> None:
    async def slow(text: str) -> list[float]:
        await asyncio.sleep(1.0)
        return embed(text)

    sem = semantic(make_cache(), aembed=slow, embed_timeout=0.1)
    q = sem.query("qa", REFUND, PART)
    assert await sem.alookup(q) is None
    assert await sem.astore(q, "30 days.")
    assert sem.problems == {"embedding timed out": 1}


def test_a_failing_verifier_is_a_miss(make_cache: Any) -> None:
    cache = make_cache()
    sem = semantic(cache, verifier=lambda new, cached: 1 / 0)
    put(sem, REFUND, "30 days.")
    assert ask(sem, REFUND_LOOSE) is None
    assert sem.problems == {"verifier failed": 1}


def test_a_backend_that_is_down_is_a_miss(unused_port: int) -> None:
    cache = AnswerCache(f"valkey://127.0.0.1:{unused_port}", timeout=0.2)
    sem = semantic(cache)
    q = sem.query("qa", REFUND, PART)
    assert sem.lookup(q) is None
    assert sem.store(q, "30 days.") is False


def test_configuration_errors_are_raised_at_once(make_cache: Any) -> None:
    cache = make_cache()
    with pytest.raises(ValueError):
        SemanticCache(cache, embed, threshold=1.5)
    with pytest.raises(TypeError):
        SemanticCache(cache, "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SemanticCache(object(), embed)  # type: ignore[arg-type]


def test_threads_share_one_mirror_safely(make_cache: Any) -> None:
    sem = semantic(make_cache())
    put(sem, REFUND, "30 days.")
    results: list[Any] = []

    def worker() -> None:
        for _ in range(20):
            results.append(ask(sem, REFUND_PARAPHRASE))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and all(r is not None and r.value == "30 days." for r in results)


def test_vectors_live_in_the_slot_of_their_namespace_tree(make_cache: Any) -> None:
    sem = semantic(make_cache(namespace="acme:support"))
    q = put(sem, REFUND, "30 days.")
    entry = sem.cache.schema.entry(q.key)
    for key in (q.part.vectors_key, q.part.log_key):
        assert key.startswith(f"{sem.cache.schema.prefix}:{{acme}}:") and key != entry


def test_guard_examples() -> None:
    g = LookalikeGuard()
    assert g.compatible("How do I reset my password?", "How can I reset my password?")
    assert g.reason("Cancel my subscription", "Don't cancel my subscription") == "negation differs"
    assert g.reason(
        "How do I turn on two-factor authentication?", "How do I turn off two-factor authentication?"
    )
    assert g.reason("Is the clinic open on Sundays?", "Is the clinic open on Saturdays?")
    assert g.reason("Ship it in 2 days", "Ship it in 3 days") == "numbers or dates differ"
    assert g.reason("Does the iPhone 15 support it?", "Does the Pixel 8 support it?")
    assert g.compatible("Where do I find invoices?", "Where can I find my invoices?")


# -- another process ----

_WRITER = """
import sys
sys.path.insert(0, {tests!r})
from semantic_fakes import embed
from valkey_rag_cache import AnswerCache
from valkey_rag_cache.semantic import SemanticCache
sem = SemanticCache(AnswerCache({url!r}, prefix={prefix!r}, namespace="support"), embed, threshold=0.9)
q = sem.query("qa", {question!r}, {part!r})
assert sem.lookup(q) is None
assert sem.store(q, "written by another process", sources=["kb/refunds.md"])
"""


@pytest.mark.standalone
def test_a_vector_written_by_a_subprocess_is_matched_here(standalone_url: str, prefix: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    cache = AnswerCache(standalone_url, prefix=prefix, namespace="support")
    sem = semantic(cache)
    assert ask(sem, REFUND_PARAPHRASE) is None  # this process's mirror exists before the write
    code = _WRITER.format(
        tests=str(Path(__file__).parents[1]), url=standalone_url, prefix=prefix, question=REFUND, part=PART
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    hit = ask(sem, REFUND_PARAPHRASE)
    assert hit is not None and hit.value == "written by another process" and not hit.exact
    cache.invalidate_source("kb/refunds.md")
    assert ask(sem, REFUND_PARAPHRASE) is None


# -- the mirror's coarse lists (large partitions) ----


def test_large_partitions_search_a_few_lists_and_still_find_near_duplicates() -> None:
    import numpy as np

    from valkey_rag_cache.semantic.mirror import PartitionMirror

    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((3000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    mirror = PartitionMirror(coarse_from=1000)
    for i, v in enumerate(vecs):
        mirror.upsert(f"d{i}", f"q{i}", v)
    assert mirror._centroids is not None and mirror._sorted > 0  # the lists are in use

    def near(i: int) -> np.ndarray:
        noise = rng.standard_normal(32).astype(np.float32) * 0.05
        out = vecs[i] + noise
        return (out / np.linalg.norm(out)).astype(np.float32)

    found = [mirror.search(near(i), 4, 0.9) for i in range(0, 3000, 30)]
    assert all(f and f[0].digest == f"d{i}" for f, i in zip(found, range(0, 3000, 30), strict=True))
    for i in range(0, 3000, 2):
        mirror.remove(f"d{i}")  # half removed: compacted and trained again
    assert len(mirror) == 1500
    assert mirror.search(near(4), 4, 0.9) == [] or mirror.search(near(4), 4, 0.9)[0].digest != "d4"
    assert mirror.search(near(5), 4, 0.9)[0].digest == "d5"


def test_a_candidate_the_decoder_rejects_is_a_miss_and_is_removed(make_cache: Any, raw_client: Any) -> None:
    from valkey_rag_cache import DecodeError

    def decode(value: Any) -> str:
        if value != "good":
            raise DecodeError("not an answer of ours")
        return str(value)

    sem = semantic(make_cache())
    q = put(sem, REFUND, "tampered")
    assert sem.lookup(sem.query("qa", REFUND_PARAPHRASE, PART), decode) is None
    assert not raw_client.exists(sem.cache.schema.entry(q.key))  # discarded as bad data
    assert sem.cache.stats()["totals"]["bad"] == 1
