"""Semantic matching for LangChain: `ValkeySemanticCache` (a ``BaseCache``) and `CachedRunnable`'s matcher.

Only the *question* is matched by similarity; everything else is matched exactly and makes the partition:

- `ValkeySemanticCache`: the last human message of a chat prompt (the whole prompt of a text model) is the
  question; the model's ``llm_string`` (parameters, stop words, bound tools, structured output) and every
  other message (system prompt, history, tool results) are exact. A prompt whose last message is not a
  plain-text human message is matched exactly only.
- `CachedRunnable(..., embeddings=...)`: the input when it is a string, else the field `semantic_key`
  names; the chain's identity, ``configurable`` and every other input field are exact.

Example:
    >>> from langchain_core.globals import set_llm_cache
    >>> set_llm_cache(ValkeySemanticCache(OpenAIEmbeddings(), similarity_threshold=0.88))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE
from langchain_core.embeddings import Embeddings

from valkey_rag_cache import AnswerCache, TTLPolicy
from valkey_rag_cache.semantic import LookalikeGuard, SemanticCache, SemanticQuery, Verifier
from valkey_rag_cache.semantic.cache import _DEFAULT_GUARD
from valkey_rag_cache.ttl import TTLValue

from .cache import ValkeyCache
from .codec import decode_generations

__all__ = ["ValkeySemanticCache", "embedder_name", "semantic_matcher", "split_prompt"]

KIND = "lc-semantic"


def embedder_name(model: Any) -> str:
    """An embedding model's identity for the index: its class and model name (never its settings or keys)."""
    kind = type(model)
    name = next(
        (
            v
            for a in ("model", "model_name", "model_id", "deployment")
            if isinstance(v := getattr(model, a, None), str)
        ),
        "",
    )
    size = getattr(model, "size", None)
    return f"{kind.__module__}.{kind.__qualname__}:{name}:{size if isinstance(size, int) else ''}"


def semantic_matcher(
    cache: AnswerCache,
    embeddings: Embeddings,
    similarity_threshold: float,
    guard: LookalikeGuard | None,
    verifier: Verifier | None,
    band: float,
    k: int,
    embed_timeout: float | None,
) -> SemanticCache:
    if not isinstance(embeddings, Embeddings):
        raise TypeError(f"embeddings must be a LangChain Embeddings, got {type(embeddings).__name__}")
    return SemanticCache(
        cache,
        embeddings.embed_query,
        aembed=embeddings.aembed_query,
        threshold=similarity_threshold,
        guard=guard,
        verifier=verifier,
        band=band,
        embedder=embedder_name(embeddings),
        k=k,
        embed_timeout=embed_timeout,
    )


def split_prompt(prompt: str) -> tuple[str | None, Any]:
    """(question, the rest of the prompt) for semantic matching; question None: match exactly only.

    >>> split_prompt("What is the refund window?")
    ('What is the refund window?', None)
    """
    try:
        doc = json.loads(prompt)
    except ValueError:
        return prompt, None
    if not (isinstance(doc, list) and doc and all(isinstance(m, dict) and m.get("lc") == 1 for m in doc)):
        return prompt, None  # a text model's prompt (that happens to be JSON, or not)
    last = doc[-1]
    ident, kwargs = last.get("id"), last.get("kwargs")
    if not (isinstance(ident, list) and ident and ident[-1] == "HumanMessage" and isinstance(kwargs, dict)):
        return None, None
    content = kwargs.get("content")
    if not isinstance(content, str) or not content.strip():
        return None, None
    rest = [*doc[:-1], {**last, "kwargs": {**kwargs, "content": None}}]
    return content, rest


class ValkeySemanticCache(ValkeyCache):
    """A ``BaseCache`` that also serves the answer of a *similar* earlier question, never a stale one.

    The question (the last human message) is matched by similarity within an exact partition (the model's
    ``llm_string`` and every other message); each candidate passes the look-alike guard and is validated like
    an exact hit, so invalidation by source, namespace and version retires semantic answers too.

    Args:
        embeddings: any LangChain ``Embeddings`` (its ``embed_query``/``aembed_query`` embed the questions).
        similarity_threshold: cosine similarity at or above which a cached answer is served; calibrate it
            for your model with `valkey_rag_cache.semantic.calibrate`.
        guard: the look-alike check (numbers, dates, negations, names); None turns it off.
        verifier: ``(new, cached) -> bool``, asked only within `band` of the threshold.
        k: candidates tried per lookup. embed_timeout: seconds before an embedding counts as failed.
        The other arguments are `ValkeyCache`'s.

    Example:
        >>> cache = ValkeySemanticCache(embeddings, 0.88, namespace="support")  # doctest: +SKIP
    """

    def __init__(
        self,
        embeddings: Embeddings,
        similarity_threshold: float = 0.9,
        *,
        guard: LookalikeGuard | None = _DEFAULT_GUARD,
        verifier: Verifier | None = None,
        band: float = 0.05,
        k: int = 4,
        embed_timeout: float | None = 10.0,
        url: str | None = None,
        client: Any = None,
        namespace: str = "default",
        ttl_policy: TTLPolicy | Mapping[str, TTLValue] | None = None,
        default_content_type: str | None = None,
        source_id_key: str | None = None,
        content_type_key: str | None = "content_type",
        prefix: str = "llmcache",
        timeout: float | None = None,
        core: AnswerCache | None = None,
    ) -> None:
        super().__init__(
            url,
            client=client,
            namespace=namespace,
            ttl_policy=ttl_policy,
            default_content_type=default_content_type,
            source_id_key=source_id_key,
            content_type_key=content_type_key,
            prefix=prefix,
            timeout=timeout,
            core=core,
        )
        self.semantic = semantic_matcher(
            self.core, embeddings, similarity_threshold, guard, verifier, band, k, embed_timeout
        )

    def _query(self, prompt: str, llm_string: str) -> SemanticQuery | None:
        question, rest = split_prompt(prompt)
        if question is None:
            return None
        return self.semantic.query(KIND, question, {"llm": llm_string, "rest": rest})

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        q = self._query(prompt, llm_string)
        if q is None:
            return super().lookup(prompt, llm_string)
        hit = self.semantic.lookup(q, decode=decode_generations)
        return None if hit is None else hit.value

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        q = self._query(prompt, llm_string)
        if q is None:
            return super().update(prompt, llm_string, return_val)
        sources, seen = self._sources(q.key, prompt)
        value = self._encode(return_val)
        if value is not None:
            self.semantic.store(q, value, sources, seen=seen)

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        q = self._query(prompt, llm_string)
        if q is None:
            return await super().alookup(prompt, llm_string)
        hit = await self.semantic.alookup(q, decode=decode_generations)
        return None if hit is None else hit.value

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        q = self._query(prompt, llm_string)
        if q is None:
            return await super().aupdate(prompt, llm_string, return_val)
        sources, seen = self._sources(q.key, prompt)
        value = self._encode(return_val)
        if value is not None:
            await self.semantic.astore(q, value, sources, seen=seen)
