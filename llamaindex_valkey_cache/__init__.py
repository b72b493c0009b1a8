"""llamaindex_valkey_cache: a Valkey LLM and answer cache for LlamaIndex that follows your documents.

Example:
    >>> from llama_index.core import Settings
    >>> from llamaindex_valkey_cache import CachedLLM, LlamaIndexCache
    >>> cache = LlamaIndexCache("valkey://localhost:6379")  # doctest: +SKIP
    >>> Settings.llm = CachedLLM(llm=Settings.llm, cache=cache)  # doctest: +SKIP

An answer depends on the documents (``ref_doc_id``s) retrieved for the query it answers. Wrapping the vector
store (`InvalidatingPydanticVectorStore`) or the docstore (`InvalidatingDocstore`) makes ingestion
invalidate them; ``cache.invalidate_source(doc_id)`` does it by hand. `CachedQueryEngine` caches a whole
query engine.
"""

from .cache import LlamaIndexCache
from .ingestion import InvalidatingDocstore, InvalidatingPydanticVectorStore
from .llm import CachedFunctionCallingLLM, CachedLLM
from .query_engine import CachedQueryEngine

__all__ = [
    "CachedFunctionCallingLLM",
    "CachedLLM",
    "CachedQueryEngine",
    "InvalidatingDocstore",
    "InvalidatingPydanticVectorStore",
    "LlamaIndexCache",
]
