"""A simulated RAG workload for the demo and notebooks: questions, a changing knowledge base, a slow model.

Everything is deterministic for a seed and runs offline:

- `KnowledgeBase`: ~20 documents, each with a version that `update()` bumps (an edit of the document).
- `Question`s: ~50 recurring questions drawn with Zipf popularity, plus a share of one-off questions that
  never repeat (the part of real traffic no exact-match cache can serve). Each question is answered from
  one to three documents (a deterministic "retriever").
- `FakeModel`: an answer that names the document versions it was built from, and a simulated latency of
  0.5-1.0 s per call. `sleep_scale` replays that latency for real, scaled down (0.005 = 200x faster).
- `run()`: plays the workload through an `AnswerCache` (invalidating a document's answers when it
  changes) and, on the same request stream, through a TTL-only cache model (what most caches do today),
  and records every request.

An answer is *stale* when the document versions it was built from differ from the current ones: the check
compares what was actually served (the cached value read back from Valkey) with the knowledge base.

Example:
    >>> from valkey_rag_cache import AnswerCache
    >>> result = run(AnswerCache(namespace="sim"), requests=200)  # doctest: +SKIP
    >>> result.summary()["ours"]["stale"]  # doctest: +SKIP
    0
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from valkey_rag_cache import AnswerCache, Source

__all__ = [
    "TOPICS",
    "FakeModel",
    "KnowledgeBase",
    "Question",
    "Request",
    "Result",
    "Step",
    "make_questions",
    "run",
    "ttl_only_replay",
]

TOPICS = [
    "billing", "refunds", "pricing", "password-reset", "single-sign-on", "api-keys", "rate-limits",
    "webhooks", "data-export", "data-retention", "gdpr", "invoices", "teams", "roles", "audit-log",
    "status-page", "integrations", "mobile-app", "shortcuts", "onboarding",
]  # fmt: skip

_TEMPLATES = [
    "What is our policy on {t}?",
    "What changed in {t} recently?",
    "How do I configure {t} for my team?",
]


@dataclass
class KnowledgeBase:
    """Documents and their current versions; `update()` is an edit that makes answers built on it stale."""

    versions: dict[str, int]

    @classmethod
    def of(cls, n_docs: int = 20) -> KnowledgeBase:
        return cls({f"kb/{t}.md": 1 for t in TOPICS[:n_docs]})

    @property
    def ids(self) -> list[str]:
        return list(self.versions)

    def update(self, doc_id: str) -> int:
        self.versions[doc_id] += 1
        return self.versions[doc_id]

    def is_current(self, used: dict[str, int]) -> bool:
        """Was an answer built on `used` (doc id -> version) built on the current documents?"""
        return all(self.versions.get(doc) == version for doc, version in used.items())


@dataclass(frozen=True)
class Question:
    text: str
    docs: tuple[str, ...]  # what the retriever returns for it


def make_questions(kb: KnowledgeBase, n: int = 50, seed: int = 7) -> list[Question]:
    """`n` recurring questions, each answered from its topic's document and sometimes one or two more."""
    rng = random.Random(seed)
    ids = kb.ids
    out = []
    for i in range(n):
        main = ids[i % len(ids)]
        topic = main.removeprefix("kb/").removesuffix(".md")
        extra = rng.sample([d for d in ids if d != main], k=rng.choice([0, 0, 1, 2]))
        text = _TEMPLATES[(i // len(ids)) % len(_TEMPLATES)].format(t=topic.replace("-", " "))
        out.append(Question(text, (main, *extra)))
    return out


class FakeModel:
    """A deterministic stand-in for an LLM: 0.5-1.0 simulated seconds per call, no network, no key.

    `sleep_scale` sleeps that latency times the scale for real (0 = no sleep, the clock is simulated).
    """

    def __init__(self, sleep_scale: float = 0.0, name: str = "fake-llm") -> None:
        self.sleep_scale = sleep_scale
        self.name = name
        self.calls = 0
        self.simulated_seconds = 0.0

    @staticmethod
    def latency(prompt: str) -> float:
        frac = int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=2).digest(), "big") / 65535
        return 0.5 + 0.5 * frac

    def answer(self, question: str, context: dict[str, int]) -> tuple[str, float]:
        """The answer text and its simulated latency in seconds."""
        self.calls += 1
        seconds = self.cost(question, context)
        self.simulated_seconds += seconds
        if self.sleep_scale:
            time.sleep(seconds * self.sleep_scale)
        return f"{question} -> answered from {_cited(context)}", seconds

    @classmethod
    def cost(cls, question: str, context: dict[str, int]) -> float:
        """Simulated seconds a call with this question and context takes."""
        return cls.latency(f"{question}\n{_cited(context)}")


def _cited(context: dict[str, int]) -> str:
    return ", ".join(f"{doc}@v{v}" for doc, v in context.items())


class Step(NamedTuple):
    """One request of the stream, as the TTL-only model replays it."""

    at: float
    question: int
    docs: tuple[str, ...]
    cost: float


@dataclass
class Request:
    """What happened to one request."""

    index: int
    at: float  # simulated seconds since the start
    question: int  # index into the recurring questions, or -1 for a one-off question
    hit: bool
    latency: float  # seconds: measured on Valkey for a hit; lookup + simulated model + store for a miss
    stale: bool  # the served answer was built on an outdated document version
    model_cost: float  # simulated seconds the model would spend on this request without a cache
    updated: str | None = None  # the document edited just before this request, if any


@dataclass
class Result:
    requests: list[Request]
    updates: list[tuple[float, str]]  # (simulated time, document) of every edit
    ttl_only: dict[str, Any]  # the TTL-only cache model's counters on the same stream
    model_calls: int
    model_seconds: float
    trace: list[Step] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        reqs = self.requests
        hits = [r for r in reqs if r.hit]
        misses = [r for r in reqs if not r.hit]
        return {
            "requests": len(reqs),
            "updates": len(self.updates),
            "no_cache": {"model_calls": len(reqs), "model_seconds": sum(r.model_cost for r in reqs)},
            "ours": {
                "hits": len(hits),
                "hit_rate": len(hits) / len(reqs) if reqs else 0.0,
                "model_calls": self.model_calls,
                "model_calls_saved": len(reqs) - self.model_calls,
                "model_seconds": self.model_seconds,
                "stale": sum(r.stale for r in reqs),
                "mean_hit_ms": 1000 * _mean(r.latency for r in hits),
                "mean_miss_s": _mean(r.latency for r in misses),
            },
            "ttl_only": dict(self.ttl_only),
        }


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else math.nan


def _zipf_weights(n: int, s: float) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


def run(
    cache: AnswerCache,
    *,
    requests: int = 2000,
    n_questions: int = 50,
    n_docs: int = 20,
    zipf_s: float = 1.1,
    one_off_share: float = 0.3,
    mean_gap: float = 6.0,
    updates_per_hour: float = 12.0,
    ttl_only_seconds: float = 3600.0,
    sleep_scale: float = 0.0,
    seed: int = 7,
    progress: Callable[[Request], None] | None = None,
) -> Result:
    """Play the workload through `cache` and, on the same stream, through a TTL-only cache model.

    Requests arrive every `mean_gap` simulated seconds on average; documents are edited at
    `updates_per_hour` (simulated) and each edit calls `cache.invalidate_source(doc)`. Answers are stored
    with their documents as sources (content type "documentation").
    """
    rng = random.Random(seed)
    kb = KnowledgeBase.of(n_docs)
    questions = make_questions(kb, n_questions, seed)
    weights = _zipf_weights(n_questions, zipf_s)
    model = FakeModel(sleep_scale)
    clock = 0.0
    next_update = rng.expovariate(updates_per_hour / 3600)
    out: list[Request] = []
    updates: list[tuple[float, str]] = []
    trace: list[Step] = []  # replayed by the TTL-only model
    one_offs = 0
    for i in range(requests):
        clock += rng.expovariate(1 / mean_gap)
        edited = None
        while next_update <= clock:
            edited = rng.choice(kb.ids)
            kb.update(edited)
            cache.invalidate_source(edited)
            updates.append((next_update, edited))
            next_update += rng.expovariate(updates_per_hour / 3600)
        if rng.random() < one_off_share:
            one_offs += 1
            q_index = -1
            docs = tuple(rng.sample(kb.ids, k=rng.choice([1, 2])))
            question = Question(f"one-off question #{one_offs}", docs)
        else:
            q_index = rng.choices(range(n_questions), weights)[0]
            question = questions[q_index]
        current = {doc: kb.versions[doc] for doc in question.docs}
        cost = FakeModel.cost(question.text, current)
        trace.append(Step(clock, q_index, question.docs, cost))
        key = cache.key("qa", {"model": model.name, "question": question.text})
        t0 = time.perf_counter()
        hit = cache.lookup(key)
        if hit is not None:
            latency = time.perf_counter() - t0
            used = hit.value["versions"]
            out.append(Request(i, clock, q_index, True, latency, not kb.is_current(used), cost, edited))
        else:
            used = current
            answer, model_s = model.answer(question.text, used)
            t1 = time.perf_counter()
            cache.store(key, {"answer": answer, "versions": used}, [Source(d, "documentation") for d in used])
            measured = (t1 - t0) - (model_s * sleep_scale) + (time.perf_counter() - t1)
            out.append(Request(i, clock, q_index, False, max(measured, 0.0) + model_s, False, cost, edited))
        if progress is not None:
            progress(out[-1])
    ttl_only = ttl_only_replay(trace, updates, ttl_only_seconds, n_docs)
    return Result(out, updates, ttl_only, model.calls, model.simulated_seconds, trace)


def ttl_only_replay(
    trace: list[Step],
    updates: list[tuple[float, str]],
    ttl_seconds: float,
    n_docs: int = 20,
) -> dict[str, Any]:
    """Replay the same requests and edits through a cache that only has a TTL (no invalidation).

    One-off questions (index -1) never repeat, so they are always misses. Returns hits, model calls and the
    number of stale answers served (an answer cached before an edit of one of its documents, still alive),
    with the times of those stale answers and a (hit, stale) pair per request.
    """
    kb = KnowledgeBase.of(n_docs)
    cached: dict[int, tuple[float, dict[str, int]]] = {}  # question -> (expires at, versions used)
    pending = list(updates)
    hits = stale = calls = 0
    seconds = 0.0
    stale_at: list[float] = []
    flags: list[tuple[bool, bool]] = []  # (hit, stale) per request
    for at, q_index, docs, cost in trace:
        while pending and pending[0][0] <= at:
            kb.update(pending.pop(0)[1])
        entry = cached.get(q_index) if q_index >= 0 else None
        if entry is not None and entry[0] > at:
            hits += 1
            fresh = kb.is_current(entry[1])
            if not fresh:
                stale += 1
                stale_at.append(at)
            flags.append((True, not fresh))
            continue
        flags.append((False, False))
        calls += 1
        seconds += cost
        if q_index >= 0:
            cached[q_index] = (at + ttl_seconds, {doc: kb.versions[doc] for doc in docs})
    n = len(trace)
    return {
        "ttl_seconds": ttl_seconds,
        "hits": hits,
        "hit_rate": hits / n if n else 0.0,
        "model_calls": calls,
        "model_seconds": seconds,
        "stale": stale,
        "stale_at": stale_at,
        "flags": flags,
    }
