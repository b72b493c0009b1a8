"""Fixtures of the LangChain adapter tests: a `ValkeyCache` on the session's standalone Valkey.

A module sets its cache's namespace by overriding the `cache_namespace` fixture.
"""

from __future__ import annotations

import pytest

from langchain_valkey_cache import ValkeyCache


@pytest.fixture
def cache_namespace() -> str:
    return "default"


@pytest.fixture
def cache(standalone_url: str, prefix: str, cache_namespace: str) -> ValkeyCache:
    return ValkeyCache(standalone_url, prefix=prefix, namespace=cache_namespace)
