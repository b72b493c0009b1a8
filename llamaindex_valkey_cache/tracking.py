"""Which documents an LLM call is built on: the nodes retrieved under the root span of the call.

LlamaIndex keeps the active span id in a ContextVar (copied into async tasks and the threads it starts), so
every span knows its parent. A span handler records each span's root; an event handler files the nodes of
each ``RetrievalEndEvent`` (and the nodes handed to a synthesizer) under that root. A cached LLM call then
depends on the ``ref_doc_id``s filed under its own root: sync, async, ``asyncio.gather``, thread pools and
chat engines each run under their own root, so their sources never mix.

Streaming query engines call the LLM lazily, after ``query()`` returned and outside its span. At
``SynthesizeEndEvent`` the response's token generator is wrapped so that each ``next()`` runs with that
query's nodes in a ContextVar, which the cached LLM reads as well.

Example:
    >>> install()  # done by `CachedLLM` and `CachedQueryEngine`; idempotent
    >>> current_retrievals()
    ()
"""

from __future__ import annotations

import contextvars
import inspect
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent
from llama_index.core.instrumentation.events.synthesis import SynthesizeEndEvent
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.response_synthesizers.base import BaseSynthesizer
from llama_index.core.schema import BaseNode, NodeWithScore

__all__ = ["Ledger", "Retrieved", "current_retrievals", "install", "ledger", "retrieved"]


@dataclass(frozen=True, slots=True)
class Retrieved:
    """One retrieved document: its id (the node's ``ref_doc_id``) and the node's metadata."""

    id: str
    metadata: Mapping[str, Any]


def retrieved(nodes: Iterable[NodeWithScore | BaseNode] | None) -> tuple[Retrieved, ...]:
    """The source documents of `nodes`: ``ref_doc_id``, or the node id for a node without a source."""
    out: list[Retrieved] = []
    for item in nodes or ():
        node = item.node if isinstance(item, NodeWithScore) else item
        if not isinstance(node, BaseNode):
            continue
        doc_id = node.ref_doc_id or node.node_id
        if doc_id:
            out.append(Retrieved(doc_id, node.metadata or {}))
    return tuple(out)


def _dedupe(items: Iterable[Retrieved]) -> tuple[Retrieved, ...]:
    seen: dict[str, Retrieved] = {}
    for item in items:
        seen.setdefault(item.id, item)
    return tuple(seen.values())


class Ledger:
    """Span roots and the retrievals filed under them, kept for `retention` seconds after a span ends.

    Records live by time rather than until their root exits: a streaming chat's root span ends while the
    stream is still being read. Sizes are capped so a span that never ends cannot grow the ledger forever,
    nor a busy process that ends more than `max_spans` spans within the retention (the oldest ended
    ones are then forgotten first, as they would be by time).
    """

    def __init__(
        self,
        retention: float = 600.0,
        max_spans: int = 200_000,
        max_roots: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retention = retention
        self.max_spans = max_spans
        self.max_roots = max_roots
        self._clock = clock
        self._lock = threading.Lock()
        self._roots: OrderedDict[str, str] = OrderedDict()  # span id -> root span id
        self._ended: deque[tuple[float, str]] = deque()
        self._filed: OrderedDict[str, list[Retrieved]] = OrderedDict()  # root span id -> retrievals

    def enter(self, span_id: str, parent_id: str | None) -> None:
        with self._lock:
            root = self._roots.get(parent_id, parent_id) if parent_id else span_id
            self._roots[span_id] = root
            if len(self._roots) > self.max_spans:
                self._roots.popitem(last=False)

    def end(self, span_id: str) -> None:
        now = self._clock()
        with self._lock:
            root = self._roots.get(span_id)
            self._ended.append((now, span_id))
            if root is not None and root in self._filed:
                self._filed.move_to_end(root)
            self._forget_before(now - self.retention)

    def _forget_before(self, cutoff: float) -> None:
        ended = self._ended
        while ended and (ended[0][0] < cutoff or len(ended) > self.max_spans):
            _, span_id = ended.popleft()
            self._roots.pop(span_id, None)
            # Records are filed under root ids only; a root whose `_roots` entry the cap already dropped
            # is forgotten here all the same.
            self._filed.pop(span_id, None)

    def root_of(self, span_id: str | None) -> str | None:
        if span_id is None:
            return None
        with self._lock:
            return self._roots.get(span_id, span_id)

    def file(self, span_id: str | None, items: Iterable[Retrieved]) -> None:
        """File retrievals under the root of `span_id` (no span: nothing to attach them to)."""
        items = tuple(items)
        if span_id is None or not items:
            return
        with self._lock:
            root = self._roots.get(span_id, span_id)
            self._filed.setdefault(root, []).extend(items)
            self._filed.move_to_end(root)
            if len(self._filed) > self.max_roots:
                self._filed.popitem(last=False)

    def under(self, span_id: str | None, start: int = 0) -> tuple[Retrieved, ...]:
        """The retrievals filed under the root of `span_id`, from the `start`-th on."""
        if span_id is None:
            return ()
        with self._lock:
            root = self._roots.get(span_id, span_id)
            return tuple(self._filed.get(root, ())[start:])


_LEDGER = Ledger()

# The nodes of the query whose lazy token stream is being read (see `_scoped_tokens`).
_STREAMING: contextvars.ContextVar[tuple[Retrieved, ...]] = contextvars.ContextVar(
    "llamaindex_valkey_cache_streaming", default=()
)


def ledger() -> Ledger:
    return _LEDGER


def current_retrievals() -> tuple[Retrieved, ...]:
    """The documents retrieved for the call running now: its root span's, plus a lazy stream's."""
    return _dedupe([*_LEDGER.under(active_span_id.get()), *_STREAMING.get()])


def _scoped_tokens(gen: Iterator[str], items: tuple[Retrieved, ...]) -> Generator[str, None, None]:
    # Set and reset around each step, never across a yield: the consumer's context must not keep them.
    try:
        while True:
            token = _STREAMING.set(items)
            try:
                item = next(gen)
            except StopIteration:
                return
            finally:
                _STREAMING.reset(token)
            yield item
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()


async def _ascoped_tokens(gen: AsyncIterator[str], items: tuple[Retrieved, ...]) -> AsyncGenerator[str, None]:
    try:
        while True:
            token = _STREAMING.set(items)
            try:
                item = await gen.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _STREAMING.reset(token)
            yield item
    finally:
        aclose = getattr(gen, "aclose", None)
        if aclose is not None:
            await aclose()


def _scope_stream(response: Any, span_id: str | None) -> None:
    """Make the lazy LLM calls behind a streaming response see the nodes it was synthesized from."""
    if not isinstance(response, StreamingResponse | AsyncStreamingResponse):
        return
    if response.response_gen is None or getattr(response, "_vrc_scoped", False):
        return
    items = _dedupe([*_LEDGER.under(span_id), *retrieved(response.source_nodes), *_STREAMING.get()])
    if isinstance(response, StreamingResponse):
        response.response_gen = _scoped_tokens(response.response_gen, items)
    else:
        response.response_gen = _ascoped_tokens(response.response_gen, items)
    response._vrc_scoped = True  # type: ignore[union-attr]


class _SpanTracker(BaseSpanHandler[Any]):
    """Records each span's root; files the nodes handed to a synthesizer under it."""

    # Every span of the application passes through here: the module's ledger is read directly, since a
    # pydantic private attribute costs more than the bookkeeping itself.

    @classmethod
    def class_name(cls) -> str:
        return "ValkeyCacheSpanTracker"

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _LEDGER.enter(id_, parent_id)
        if isinstance(instance, BaseSynthesizer):
            # Nodes can reach a synthesizer without a retrieval event (passed in by hand, or retrieved
            # in a thread that started without our context): they are sources all the same.
            args = bound_args.arguments
            _LEDGER.file(
                id_, retrieved([*args.get("nodes", ()), *(args.get("additional_source_nodes") or ())])
            )

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        _LEDGER.end(id_)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        _LEDGER.end(id_)

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class _EventTracker(BaseEventHandler):
    """Files retrieved nodes under their root span; scopes lazy token streams to their query's nodes."""

    @classmethod
    def class_name(cls) -> str:
        return "ValkeyCacheEventTracker"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, RetrievalEndEvent):
            _LEDGER.file(event.span_id, retrieved(event.nodes))
        elif isinstance(event, SynthesizeEndEvent):
            _scope_stream(event.response, event.span_id)


_install_lock = threading.Lock()
_installed = False


def install() -> None:
    """Attach the trackers to LlamaIndex's root dispatcher, once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        root = get_dispatcher()
        root.add_span_handler(_SpanTracker())
        root.add_event_handler(_EventTracker())
        _installed = True
