"""`ValkeyCache`: LangChain's ``BaseCache`` on Valkey, with answers that depend on the documents retrieved.

Example:
    >>> from langchain_core.globals import set_llm_cache
    >>> set_llm_cache(ValkeyCache("valkey://localhost:6379"))  # doctest: +SKIP
    >>> chain.invoke("How do I reset my password?")  # doctest: +SKIP
    >>> get_llm_cache().invalidate_source("kb/reset.md")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any, Unpack

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache

from valkey_rag_cache import CacheOperations, EntryKey, Seen, Source
from valkey_rag_cache.digests import fields_digest
from valkey_rag_cache.keys import validate_namespace
from valkey_rag_cache.operations import CoreOptions
from valkey_rag_cache.telemetry import warn_once

from .capture import Captured, capture
from .codec import decode_generations, encode_generations

__all__ = ["ValkeyCache"]

log = logging.getLogger("langchain_valkey_cache")

KIND = "lc"


class ValkeyCache(CacheOperations, BaseCache):
    """A ``BaseCache`` for chat and text models whose entries depend on the documents behind each prompt.

    Sources are captured automatically when a retriever ran earlier in the same LangChain run; add more with
    ``config={"metadata": {"source_ids": [...]}}`` or ``with cache.sources([...]):``.

    Args:
        url: ``valkey://host:port`` (also ``valkeys://``, ``redis://``, ``rediss://``, ``unix://``); default
            ``VALKEY_URL``, else an embedded Valkey.
        source_id_key: ``None`` (default): a document's source is its ``Document.id`` (``metadata["source"]``
            when the id is missing); a key name: ``metadata[source_id_key]`` (the id when missing).
        content_type_key: metadata key holding a document's content type (``static``, ``realtime``, ...).
        options: the core's (`CoreOptions`): ``namespace`` (``clear()`` removes it and those below it),
            ``ttl_policy``, ``default_content_type``, ``prefix``, ``timeout``, ``client``, ``cluster``,
            ``retry_after``, ``embedded``, ``confined``, or ``core=`` an existing `AnswerCache` to share.
            Options left at None take the core's defaults.

    Example:
        >>> cache = ValkeyCache("valkey://localhost:6379", namespace="support")  # doctest: +SKIP
        >>> model = ChatOpenAI(cache=cache)  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        source_id_key: str | None = None,
        content_type_key: str | None = "content_type",
        **options: Unpack[CoreOptions],
    ) -> None:
        super().__init__(url, **options)
        self.source_id_key = source_id_key
        self.content_type_key = content_type_key
        self._capture = capture()
        self._checked_namespace: str | None = None

    def _key(self, prompt: str, llm_string: str) -> EntryKey:
        # All of llm_string: after its "---" come stop words, bound tools and structured-output settings.
        # Length-prefixed fields, the model's first: its hash state is kept across calls (`digests`).
        namespace = self.core.namespace
        if namespace is not self._checked_namespace:  # validated once, not per call
            self._checked_namespace = self.core.check_namespace(validate_namespace(namespace))
        return EntryKey(namespace, fields_digest(KIND, llm_string, prompt))

    def _sources(self, key: EntryKey, prompt: str) -> tuple[list[Source], Seen | None]:
        """The sources of this update, and the lookup's view to check it against when it must be explicit."""
        taken = self._capture.take_prompt_sources(prompt)  # text models
        if taken is None:
            return self.captured_sources(self._capture.chat_sources()), None  # chat models
        captured, still_pending = taken
        # The same prompt again in this batch: its update needs the lookup's view too, so read it here and
        # leave it in place instead of letting this write consume it.
        return self.captured_sources(captured), self.core.seen(key) if still_pending else None

    def captured_sources(self, captured: Captured) -> list[Source]:
        """Sources for captured documents and metadata ids, read with this cache's metadata keys."""
        return captured.sources(self.source_id_key, self.content_type_key)

    def _encode(self, return_val: RETURN_VAL_TYPE) -> dict[str, Any] | None:
        try:
            return encode_generations(return_val)
        except TypeError as exc:  # UnsupportedValue: a generation type we cannot restore exactly
            warn_once(log, f"uncachable:{exc}", "langchain_valkey_cache: not caching this answer: %s", exc)
            return None

    # -- BaseCache -------------------------------------------------------------------------------------

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        # An entry that does not decode is a counted miss, removed by the core (which keeps the race check).
        hit = self.core.lookup(self._key(prompt, llm_string), decode=decode_generations)
        return None if hit is None else hit.value

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        key = self._key(prompt, llm_string)
        sources, seen = self._sources(key, prompt)  # taken even when not stored: the prompt's update came
        value = self._encode(return_val)
        if value is not None:
            self.core.store(key, value, sources, seen=seen)

    def clear(self, **kwargs: Any) -> None:
        """Remove this cache's namespace (and those below it); keys of other namespaces stay."""
        self.core.clear(kwargs.get("namespace"))

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        hit = await self.core.alookup(self._key(prompt, llm_string), decode=decode_generations)
        return None if hit is None else hit.value

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        key = self._key(prompt, llm_string)
        sources, seen = self._sources(key, prompt)
        value = self._encode(return_val)
        if value is not None:
            await self.core.astore(key, value, sources, seen=seen)

    async def aclear(self, **kwargs: Any) -> None:
        await self.core.aclear(kwargs.get("namespace"))
