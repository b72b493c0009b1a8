"""langchain_valkey_cache: a Valkey LLM and answer cache for LangChain whose answers follow their documents.

Example:
    >>> from langchain_core.globals import set_llm_cache
    >>> from langchain_valkey_cache import ValkeyCache
    >>> set_llm_cache(ValkeyCache("valkey://localhost:6379"))  # doctest: +SKIP

Answers made by a model call depend on the documents retrieved earlier in the same LangChain run;
``cache.invalidate_source(doc_id)`` (or `InvalidatingVectorStore` under ``index(...)``) drops them.
`CachedRunnable` caches a whole chain, streams included. `ValkeySemanticCache` (and `CachedRunnable`'s
``embeddings=``) also serve the answer of a similar question, validated like an exact hit.
"""

from .cache import ValkeyCache
from .runnable import CachedRunnable
from .semantic import ValkeySemanticCache
from .vectorstore import InvalidatingVectorStore

__all__ = ["CachedRunnable", "InvalidatingVectorStore", "ValkeyCache", "ValkeySemanticCache"]
