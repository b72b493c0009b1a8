"""valkey_rag_cache: the framework-neutral core of the Valkey LLM and answer cache.

Example (without a URL or ``VALKEY_URL``, on an embedded Valkey):
    >>> from valkey_rag_cache import AnswerCache, Source
    >>> cache = AnswerCache(namespace="faqs:billing")
    >>> key = cache.key("qa", {"question": "When am I billed?"})
    >>> cache.store(key, {"answer": "On the 1st."}, [Source("billing.md", "documentation")])
    True
    >>> cache.lookup(key).value
    {'answer': 'On the 1st.'}
    >>> cache.invalidate_source("billing.md"), cache.lookup(key)
    (1, None)
"""

from .cache import AnswerCache
from .doctor import DoctorReport
from .envelope import Hit
from .errors import CacheError, DecodeError, InvalidationError
from .keys import EntryKey
from .operations import CacheOperations, Invalidates, Operations
from .seen import Seen
from .sources import Source, SourceScope, as_sources, scoped_sources
from .ttl import DEFAULT_TTLS, TTLPolicy

__all__ = [
    "AnswerCache",
    "CacheError",
    "CacheOperations",
    "DEFAULT_TTLS",
    "DecodeError",
    "DoctorReport",
    "EntryKey",
    "Hit",
    "Invalidates",
    "InvalidationError",
    "Operations",
    "Seen",
    "Source",
    "SourceScope",
    "TTLPolicy",
    "as_sources",
    "scoped_sources",
]
