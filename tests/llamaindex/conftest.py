"""Fixtures of the LlamaIndex adapter tests: a `LlamaIndexCache` on the session's standalone Valkey, and
``Settings`` with the deterministic models of `llamaindex_support`, restored after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llamaindex_support import CountingLLM, KeywordEmbedding, scoped_settings
from llamaindex_valkey_cache import LlamaIndexCache


@pytest.fixture
def cache(standalone_url: str, prefix: str) -> LlamaIndexCache:
    return LlamaIndexCache(standalone_url, prefix=prefix)


@pytest.fixture
def settings() -> Iterator[tuple[KeywordEmbedding, CountingLLM]]:
    with scoped_settings() as pair:
        yield pair
