"""Automatic source capture: which documents a LangChain run retrieved before it called a model.

One process-wide callback handler, added to every LangChain run through `register_configure_hook`, records
each run's parent, files the documents of every retriever run under the root of its run tree, and when a
model starts resolves the root's documents for the cache:

- chat models: into a context variable. The handler runs inline (``run_inline = True``) in the very context
  that goes on to call ``BaseCache.update``; a run's steps and a batch's items each get a copied context, so
  a variable set by the retriever step itself would never reach the model step.
- text models: ``BaseLLM.agenerate`` starts its runs in separate tasks, so a context variable set there is
  lost; the documents wait instead in a table keyed by prompt until ``update`` takes them. A prompt may be
  pending more than once (the same prompt twice in one batch): the table counts its runs, and every
  ``update`` of it gets the merged sources.

``config={"metadata": {"source_ids": [...]}}`` adds sources to every model call of that run.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.tracers.context import register_configure_hook

from valkey_rag_cache import Source
from valkey_rag_cache.sources import source_from

__all__ = ["Captured", "SourceCapture", "capture", "document_sources", "metadata_sources"]

log = logging.getLogger("langchain_valkey_cache")

METADATA_KEY = "source_ids"

# Bounds on the run table: runs whose end event never comes (an abandoned stream) must not pile up.
_MAX_RUNS = 50_000
_MAX_PROMPTS = 2_000
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Captured:
    """The documents retrieved in a model call's run tree, and sources named in the run's metadata."""

    documents: tuple[Document, ...] = ()
    extra: tuple[Source | str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.documents or self.extra)

    def sources(self, source_id_key: str | None, content_type_key: str | None) -> list[Source]:
        """The documents' sources (see `document_sources`), then the ids named in metadata."""
        out = document_sources(self.documents, source_id_key, content_type_key)
        out.extend(item if isinstance(item, Source) else Source(item) for item in self.extra)
        return out

    def merge(self, other: Captured) -> Captured:
        """Both, without repeating what this one already holds (one prompt's runs often share documents)."""
        docs = tuple(d for d in other.documents if d not in self.documents)
        extra = tuple(e for e in other.extra if e not in self.extra)
        return Captured(self.documents + docs, self.extra + extra) if docs or extra else self


NOTHING = Captured()

# What the chat model call running in this context was given; read by ValkeyCache.update.
_CHAT: contextvars.ContextVar[Captured] = contextvars.ContextVar(
    "langchain_valkey_cache_chat", default=NOTHING
)


def metadata_sources(metadata: Mapping[str, Any] | None) -> tuple[Source | str, ...]:
    """Sources named by ``metadata["source_ids"]`` (ids or `Source`s)."""
    if not metadata:
        return ()
    ids = metadata.get(METADATA_KEY)
    if not ids:
        return ()
    if isinstance(ids, str | Source):
        return (ids,)
    return tuple(i for i in ids if isinstance(i, str | Source) and i)


@dataclass(slots=True)
class _Pending:
    """A prompt's merged sources, and how many of its model runs have yet to reach ``update``."""

    captured: Captured
    count: int = field(default=1)


def _prompt_key(prompt: str) -> bytes:
    # A digest, not the prompt: entries of runs whose update never comes (no cache on that model) wait for
    # the trim, and long RAG prompts should not wait with them.
    return hashlib.blake2b(prompt.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _trim(table: dict[Any, Any], limit: int) -> None:
    if len(table) > limit:
        for key in list(table)[: len(table) - limit + limit // 5]:
            table.pop(key, None)


class SourceCapture(BaseCallbackHandler):
    """The process-wide handler; use `capture()` to get it (installed on first use)."""

    run_inline = True  # same context as the model call; off, async runs would read a previous call's sources
    raise_error = False

    def __init__(self) -> None:
        self._parents: dict[UUID, UUID | None] = {}
        self._roots: dict[UUID, list[Document]] = {}
        self._prompts: dict[bytes, _Pending] = {}
        self._llm_runs: dict[UUID, tuple[bytes, ...]] = {}  # a text-model run's prompts, until it ends
        self._lock = threading.Lock()

    # -- run tree --------------------------------------------------------------------------------------

    def _start(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        self._parents[run_id] = parent_run_id
        if len(self._parents) > _MAX_RUNS:
            with self._lock:
                _trim(self._parents, _MAX_RUNS)
                _trim(self._roots, _MAX_RUNS)

    def _end(self, run_id: UUID) -> None:
        parent = self._parents.pop(run_id, _MISSING)
        if parent is None:
            self._roots.pop(run_id, None)

    def _root(self, run_id: UUID | None) -> UUID | None:
        current = run_id
        while current is not None:
            parent = self._parents.get(current, _MISSING)
            if parent is None or parent is _MISSING:
                return current
            current = parent  # type: ignore[assignment]
        return None

    def _resolve(self, parent_run_id: UUID | None, metadata: Mapping[str, Any] | None) -> Captured:
        root = self._root(parent_run_id)
        docs = tuple(self._roots.get(root, ())) if root is not None else ()
        return Captured(docs, metadata_sources(metadata))

    def run_sources(self, run_id: UUID, metadata: Mapping[str, Any] | None = None) -> Captured:
        """Everything retrieved so far in the run tree of `run_id` (for `CachedRunnable`), plus metadata ids.

        The whole tree, not just the run's own sub-tree: documents retrieved before the run started may have
        flowed into its input, and a dependency too many only costs an early recompute.
        """
        return self._resolve(run_id, metadata)

    # -- what ValkeyCache.update reads -----------------------------------------------------------------

    @staticmethod
    def chat_sources() -> Captured:
        return _CHAT.get()

    def take_prompt_sources(self, prompt: str) -> tuple[Captured, int] | None:
        """A text model's sources for `prompt`, and how many more updates of that prompt are still to come.

        None when no text-model run of `prompt` is pending (a chat model, or a direct ``update`` call).
        """
        if not self._prompts:
            return None
        key = _prompt_key(prompt)
        with self._lock:
            pending = self._prompts.get(key)
            if pending is None:
                return None
            pending.count -= 1
            if pending.count <= 0:
                del self._prompts[key]
            return pending.captured, max(pending.count, 0)

    def _release(self, keys: Iterable[bytes]) -> None:
        """Runs that failed: their updates never come."""
        with self._lock:
            for key in keys:
                pending = self._prompts.get(key)
                if pending is not None:
                    pending.count -= 1
                    if pending.count <= 0:
                        del self._prompts[key]

    # -- callbacks -------------------------------------------------------------------------------------

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._start(run_id, parent_run_id)

    def on_tool_start(
        self,
        serialized: Any,
        input_str: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id)

    def on_retriever_start(
        self, serialized: Any, query: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._start(run_id, parent_run_id)

    def on_retriever_end(
        self, documents: Sequence[Document], *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        docs = [d for d in documents if isinstance(d, Document)]
        current = parent_run_id
        while current is not None:
            parent = self._parents.get(current, _MISSING)
            if parent is None or parent is _MISSING:
                self._roots.setdefault(current, []).extend(docs)
                break
            current = parent  # type: ignore[assignment]
        self._end(run_id)

    def on_chat_model_start(
        self,
        serialized: Any,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id)
        _CHAT.set(self._resolve(parent_run_id, metadata))

    def on_llm_start(
        self,
        serialized: Any,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id)
        captured = self._resolve(parent_run_id, metadata)
        # Every prompt is counted, sources or not: an update that knows another update of its prompt follows
        # leaves the lookup's view in place for it, so that write is race-checked too.
        keys = tuple(_prompt_key(p) for p in prompts)
        with self._lock:
            self._llm_runs[run_id] = keys
            for key in keys:
                pending = self._prompts.get(key)
                if pending is None:
                    self._prompts[key] = _Pending(captured)
                else:
                    # Two runs of one prompt: each update gets both runs' sources (more caution, not less).
                    pending.captured = pending.captured.merge(captured)
                    pending.count += 1
            _trim(self._prompts, _MAX_PROMPTS)
            _trim(self._llm_runs, _MAX_RUNS)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)
        self._llm_runs.pop(run_id, None)  # a text model's update() follows and takes the prompt's sources
        _CHAT.set(NOTHING)  # a chat model's update() has run by now; a text model's reads the prompt table

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)
        keys = self._llm_runs.pop(run_id, None)
        if keys:
            self._release(keys)
        _CHAT.set(NOTHING)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)


_HANDLER = SourceCapture()
_HOOK: contextvars.ContextVar[SourceCapture | None] = contextvars.ContextVar(
    "langchain_valkey_cache_capture", default=_HANDLER
)
_install_lock = threading.Lock()
_installed = False


def capture() -> SourceCapture:
    """The process-wide `SourceCapture`, added to every LangChain run from the first call on."""
    global _installed
    if not _installed:
        with _install_lock:
            if not _installed:
                register_configure_hook(_HOOK, inheritable=True)
                _installed = True
    return _HANDLER


def document_sources(
    documents: Iterable[Document], source_id_key: str | None, content_type_key: str | None
) -> list[Source]:
    """Each document's source, ``Document.id`` (default) or ``metadata[source_id_key]``, and content type.

    When the chosen field is missing the other one is used (``metadata["source"]`` stands in for a missing
    ``Document.id``); a document with neither cannot be a dependency and is skipped.
    """
    out: list[Source] = []
    for doc in documents:
        meta = doc.metadata or {}
        ident = (
            (doc.id or meta.get("source")) if source_id_key is None else (meta.get(source_id_key) or doc.id)
        )
        if ident is None or ident == "":
            _warn_unidentified()
            continue
        out.append(source_from(str(ident), meta, content_type_key))
    return out


_warned = False


def _warn_unidentified() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "langchain_valkey_cache: a retrieved document has no Document.id and no source metadata, so "
            "answers built on it cannot be invalidated by source (only by TTL, namespace or version)"
        )
