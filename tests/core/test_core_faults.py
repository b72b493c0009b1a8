"""Faults between a lookup and its write: a write whose lookup did not reach Valkey is never stored unchecked.

The scenario each test plays: a lookup fails (the server is paused beyond the timeout, the connection is
refused, the cache is in its back-off window, the lookup script fails), the answer is computed anyway, an
invalidation covering it returns (from another cache instance: another process), and then the write comes.
Stored unchecked it would be served after the invalidation returned: a stale hit. It must be refused, and the
next lookup must miss. A `store()` with no lookup before it keeps its documented behaviour (stored).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
from langchain_core.outputs import Generation
from llama_index.core.llms import MockLLM
from pydantic import PrivateAttr

import valkey_rag_cache.ops.lookup as lookup_op
from langchain_valkey_cache import ValkeyCache as LangChainCache
from llamaindex_valkey_cache import CachedLLM, LlamaIndexCache
from servers import Server, free_port
from valkey_rag_cache import AnswerCache
from valkey_rag_cache.scripts import Script

REAL = [
    pytest.param("standalone", marks=pytest.mark.standalone),
    pytest.param("cluster", marks=pytest.mark.cluster),
]


class Outage:
    """A fault on the test's backend: lookups and writes cannot complete until `end()`.

    Real servers: ``CLIENT PAUSE WRITE`` on every primary (scripts wait, so a call times out), lifted by
    ``CLIENT UNPAUSE``. fakeredis: its server refuses connections.
    """

    def __init__(self, request: pytest.FixtureRequest, backend: str, make_cache: Any) -> None:
        self.fake = make_cache.fake
        self.admins: list[valkey.Valkey] = []
        if backend in ("standalone", "glide"):
            self.admins = [valkey.Valkey.from_url(request.getfixturevalue("standalone_url"))]
        elif backend in ("cluster", "glide-cluster"):
            nodes = request.getfixturevalue("valkey_cluster").nodes
            self.admins = [valkey.Valkey(port=n.port) for n in nodes]

    def begin(self) -> None:
        if self.fake is not None:
            self.fake.server.connected = False
        for admin in self.admins:
            admin.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")

    def end(self) -> None:
        if self.fake is not None:
            self.fake.server.connected = True
        for admin in self.admins:
            admin.execute_command("CLIENT", "UNPAUSE")

    @contextlib.contextmanager
    def during(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()


@pytest.fixture
def outage(request: pytest.FixtureRequest, backend: str, make_cache: Any) -> Iterator[Outage]:
    fault = Outage(request, backend, make_cache)
    yield fault
    fault.end()


def _app_and_ingest(make_cache: Any, **options: Any) -> tuple[AnswerCache, AnswerCache]:
    # The app's cache gives up quickly; the ingestion's is another instance (another process's view).
    options.setdefault("retry_after", 0.0)  # no back-off: the write after the fault does reach Valkey
    app = make_cache(namespace="docs", timeout=0.25, **options)
    ingest = make_cache(namespace="docs")
    return app, ingest


def _warm(app: AnswerCache, key: Any) -> None:
    # The group and the source's token exist, so the write below would pass unchecked if it were unchecked.
    assert app.lookup(key) is None
    assert app.store(key, "v0", ["doc"])
    assert app.lookup(key) is not None


# -- a lookup that timed out or could not connect ----------------------------------------------------------


def test_a_write_after_a_lookup_that_did_not_reach_valkey_is_refused(make_cache: Any, outage: Outage) -> None:
    app, ingest = _app_and_ingest(make_cache)
    key = app.key("qa", "How do I reset my password?")
    _warm(app, key)
    ingest.invalidate_source("doc")
    with outage.during():
        assert app.lookup(key) is None  # timed out (or refused): a miss, the model is called
    ingest.invalidate_source("doc")  # the document changes while the model answers from the old text
    assert app.store(key, "built on the old document", ["doc"]) is False
    assert app.lookup(key) is None
    # Refusing is for that one write: the next miss caches again.
    assert app.store(key, "built on the new document", ["doc"]) is True
    hit = app.lookup(key)
    assert hit is not None and hit.value == "built on the new document"


async def test_a_write_after_a_lookup_that_did_not_reach_valkey_is_refused_async(
    make_cache: Any, outage: Outage
) -> None:
    app, ingest = _app_and_ingest(make_cache)
    key = app.key("qa", "How do I reset my password?")
    assert await app.alookup(key) is None
    assert await app.astore(key, "v0", ["doc"])
    with outage.during():
        assert await app.alookup(key) is None
    await ingest.ainvalidate_source("doc")
    assert await app.astore(key, "built on the old document", ["doc"]) is False
    assert await app.alookup(key) is None
    assert await app.astore(key, "built on the new document", ["doc"]) is True
    hit = await app.alookup(key)
    assert hit is not None and hit.value == "built on the new document"


def test_a_write_after_a_lookup_skipped_in_the_back_off_window_is_refused(
    make_cache: Any, outage: Outage
) -> None:
    app, ingest = _app_and_ingest(make_cache, retry_after=0.5)
    key, other = app.key("qa", "q"), app.key("qa", "another question")
    _warm(app, key)
    with outage.during():
        assert app.lookup(other) is None  # this one fails and starts the back-off
    skipped = app.health.skipped
    assert app.lookup(key) is None  # not even sent: the cache is backing off
    assert app.health.skipped == skipped + 1
    ingest.invalidate_source("doc")
    while app.health.should_skip():  # the model call outlasts the back-off
        time.sleep(0.05)
    assert app.store(key, "built on the old document", ["doc"]) is False
    assert app.lookup(key) is None


@pytest.mark.standalone
def test_a_write_after_a_lookup_refused_by_a_restarting_server_is_refused(tmp_path: Any) -> None:
    server = Server(free_port(), str(tmp_path)).start()
    try:
        app = AnswerCache(server.url, namespace="docs", timeout=0.25, retry_after=0.0)
        ingest = AnswerCache(server.url, namespace="docs")
        key = app.key("qa", "q")
        _warm(app, key)
        server.stop()  # everything is lost: no persistence
        assert app.lookup(key) is None  # connection refused
        server.start()
        ingest.invalidate_source("doc")
        assert app.store(key, "built on the old document", ["doc"]) is False
        assert app.lookup(key) is None
    finally:
        server.stop()


def test_a_write_after_a_failing_lookup_script_is_refused(
    make_cache: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, ingest = _app_and_ingest(make_cache)
    key = app.key("qa", "q")
    _warm(app, key)
    real = lookup_op.script
    broken = Script("lookup", "return redis.call('NO-SUCH-COMMAND')")
    monkeypatch.setattr(lookup_op, "script", lambda name: broken if name == "lookup" else real(name))
    # Over a direct line a hit needs no script (`lookup.peek`): this lookup takes the script's path.
    monkeypatch.setattr(lookup_op, "peek_outcome", lambda env, key, replies: None)
    assert app.lookup(key) is None  # the script fails on the server: a miss, logged
    monkeypatch.setattr(lookup_op, "script", real)
    ingest.invalidate_source("doc")
    assert app.store(key, "built on the old document", ["doc"]) is False
    assert app.lookup(key) is None


def test_a_write_with_no_lookup_before_it_is_stored_as_documented(make_cache: Any, outage: Outage) -> None:
    app, ingest = _app_and_ingest(make_cache)
    key, other = app.key("qa", "q"), app.key("qa", "another question")
    ingest.invalidate_source("doc")
    with outage.during():
        assert app.lookup(other) is None  # a failed lookup of another key changes nothing for this one
    assert app.store(key, "computed by a batch job", ["doc"]) is True
    hit = app.lookup(key)
    assert hit is not None and hit.value == "computed by a batch job"


def test_the_refusal_travels_with_the_view_passed_explicitly(make_cache: Any, outage: Outage) -> None:
    app, ingest = _app_and_ingest(make_cache)
    key = app.key("qa", "q")
    _warm(app, key)
    with outage.during():
        assert app.lookup(key) is None
    seen = app.seen(key)  # what a caller hands to a write that runs in another context
    assert seen is not None and not seen.reached
    ingest.invalidate_source("doc")

    def elsewhere() -> bool:
        return app.store(key, "built on the old document", ["doc"], seen=seen)

    assert contextvars.Context().run(elsewhere) is False
    assert app.lookup(key) is None


# -- the adapters carry the view to the write -----------------------------------------------------------


@pytest.mark.parametrize("backend", REAL, indirect=True)
def test_langchain_update_after_a_lookup_that_did_not_reach_valkey_is_refused(
    make_cache: Any, outage: Outage, prefix: str, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("standalone_url" if backend == "standalone" else "cluster_url")
    app = LangChainCache(url, prefix=prefix, namespace="chat", timeout=0.25)
    app.core.health.retry_after = 0.0
    ingest = LangChainCache(url, prefix=prefix, namespace="chat")
    answer = [Generation(text="built on the old document")]
    app.update("prompt", "llm", [Generation(text="v0")])
    with outage.during():
        assert app.lookup("prompt", "llm") is None
    ingest.invalidate_namespace()
    app.update("prompt", "llm", answer)
    assert app.lookup("prompt", "llm") is None


@pytest.mark.parametrize("backend", REAL, indirect=True)
async def test_langchain_aupdate_after_a_lookup_that_did_not_reach_valkey_is_refused(
    make_cache: Any, outage: Outage, prefix: str, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("standalone_url" if backend == "standalone" else "cluster_url")
    app = LangChainCache(url, prefix=prefix, namespace="chat", timeout=0.25)
    app.core.health.retry_after = 0.0
    ingest = LangChainCache(url, prefix=prefix, namespace="chat")
    await app.aupdate("prompt", "llm", [Generation(text="v0")])
    with outage.during():
        assert await app.alookup("prompt", "llm") is None
    await ingest.ainvalidate_namespace()
    await app.aupdate("prompt", "llm", [Generation(text="built on the old document")])
    assert await app.alookup("prompt", "llm") is None


class ChangingWorldLLM(MockLLM):
    """LlamaIndex's MockLLM; while it answers, the fault ends and the knowledge base changes."""

    _during: Any = PrivateAttr(default=None)
    _calls: int = PrivateAttr(default=0)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        self._calls += 1
        if self._during is not None:
            self._during()
        return super().complete(prompt, formatted=formatted, **kwargs)

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        return self.complete(prompt, formatted=formatted, **kwargs)


@pytest.mark.parametrize("backend", REAL, indirect=True)
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_llamaindex_cached_llm_after_a_lookup_that_did_not_reach_valkey_is_refused(
    make_cache: Any, outage: Outage, prefix: str, backend: str, request: pytest.FixtureRequest, mode: str
) -> None:
    url = request.getfixturevalue("standalone_url" if backend == "standalone" else "cluster_url")
    app = LlamaIndexCache(url, prefix=prefix, namespace="chat", timeout=0.25)
    app.core.health.retry_after = 0.0
    ingest = LlamaIndexCache(url, prefix=prefix, namespace="chat")
    inner = ChangingWorldLLM(max_tokens=4)
    llm = CachedLLM(llm=inner, cache=app)

    async def complete() -> Any:
        return (
            llm.complete("What is the refund policy?")
            if mode == "sync"
            else await llm.acomplete("What is the refund policy?")
        )

    await complete()  # cached
    await complete()
    assert inner._calls == 1

    def fault_ends_and_the_document_changes() -> None:
        outage.end()
        ingest.invalidate_namespace()

    app.core.invalidate_namespace()  # the cached answer is retired; the next call misses...
    outage.begin()  # ...or would, but its lookup times out
    inner._during = fault_ends_and_the_document_changes
    await complete()
    inner._during = None
    assert inner._calls == 2
    await complete()  # the answer written after the invalidation returned was refused: the model is asked
    assert inner._calls == 3


@pytest.mark.parametrize("backend", [pytest.param("fake", marks=pytest.mark.fake)], indirect=True)
def test_a_failed_lookup_pushed_out_of_the_ledger_still_refuses_its_write(
    make_cache: Any, outage: Outage
) -> None:
    # A text model's batch looks every prompt up before the first write; past the ledger's size, the
    # oldest views become the group's floor, and an unreached one must stay a refusal there.
    app, ingest = _app_and_ingest(make_cache)
    first = app.key("qa", "prompt 0")
    _warm(app, first)
    with outage.during():
        for i in range(600):
            assert app.lookup(app.key("qa", f"prompt {i}")) is None
    ingest.invalidate_source("doc")
    assert app.store(first, "built on the old document", ["doc"]) is False
    assert app.lookup(first) is None
