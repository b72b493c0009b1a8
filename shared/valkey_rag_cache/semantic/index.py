"""The semantic index interface: where candidates come from, never what is served.

An index answers "which cached questions of this exact partition are nearest to this vector?". Whatever it
returns, `SemanticCache` validates each candidate with the core's own lookup of the candidate's entry key
(the script an exact hit runs), and derives that key from the partition and the candidate's question, so an
index that is out of date, lost or even wrong can cost a miss, never a stale or foreign hit.

Operations are sans-IO flows (generators yielding `ops.requests` ops), like the rest of the core, so one index
serves the sync and the async API. `MirrorIndex` (a numpy mirror per partition in each process, synced from
Valkey) is the one shipped; a valkey-search backend (``FT.SEARCH`` KNN with a TAG filter on the partition)
would implement the same three methods.

Example:
    >>> part = Partition("support", "Xq3...", "llmcache:{support}:v:support:Xq3...", "...:vl:...")
    >>> # flow = index.search(ctx, part, unit_vector, k=4, floor=0.8)  -> [Candidate, ...]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ops.env import Env
from ..ops.requests import Flow

__all__ = ["Candidate", "Partition", "SemanticIndex"]


@dataclass(frozen=True, slots=True)
class Partition:
    """One exact partition of the semantic index: a namespace and a digest of everything matched exactly."""

    namespace: str
    digest: str
    vectors_key: str
    log_key: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """A cached question near the new one, with its cosine similarity; the entry key is derived from it."""

    question: str
    similarity: float
    digest: str


class SemanticIndex(ABC):
    """Nearest cached questions per exact partition. Implementations must be safe to call from threads."""

    @abstractmethod
    def search(self, ctx: Env, part: Partition, vector: np.ndarray, k: int, floor: float) -> Flow[Any]:
        """Up to `k` candidates with similarity >= `floor`, best first (a flow returning a list)."""

    @abstractmethod
    def add(self, ctx: Env, part: Partition, digest: str, question: str, vector: np.ndarray) -> Flow[Any]:
        """Make an entry's question findable by every process (called after its entry was stored)."""

    @abstractmethod
    def forget(self, ctx: Env, part: Partition, digest: str) -> Flow[Any]:
        """Drop a candidate whose entry is gone (expired, evicted, invalidated)."""
