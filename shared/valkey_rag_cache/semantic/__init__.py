"""Semantic matching for the core: similar questions share an answer, within an exact partition, never stale.

Example:
    >>> from valkey_rag_cache import AnswerCache
    >>> from valkey_rag_cache.semantic import SemanticCache
    >>> sem = SemanticCache(AnswerCache(namespace="support"), embed=model.embed)  # doctest: +SKIP
    >>> q = sem.query("qa", "How long do refunds take?", partition={"model": "x"})  # doctest: +SKIP
    >>> sem.lookup(q) or sem.store(q, "5 days.", sources=["kb/refunds.md"])  # doctest: +SKIP
"""

from .cache import SemanticCache, SemanticHit, SemanticQuery, Verifier
from .calibrate import Calibration, calibrate, pair_scores, rates_at
from .guard import LookalikeGuard
from .index import Candidate, Partition, SemanticIndex
from .mirror import MirrorIndex

__all__ = [
    "Calibration",
    "Candidate",
    "LookalikeGuard",
    "MirrorIndex",
    "Partition",
    "SemanticCache",
    "SemanticHit",
    "SemanticIndex",
    "SemanticQuery",
    "Verifier",
    "calibrate",
    "pair_scores",
    "rates_at",
]
