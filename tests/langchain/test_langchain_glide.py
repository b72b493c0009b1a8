"""The LangChain cache over a Valkey GLIDE client (asyncio): lookups, updates and model calls."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration

import langchain_valkey_cache

pytestmark = pytest.mark.glide


async def test_langchain_async_lookup_update_and_model_calls_over_glide(
    glide_async_client: Any, prefix: str
) -> None:
    cache = langchain_valkey_cache.ValkeyCache(client=glide_async_client, prefix=prefix)
    gen = [ChatGeneration(message=AIMessage(content="hello", id="run-1"))]
    assert await cache.alookup("prompt", "llm") is None
    with cache.sources(["doc.md"]):
        await cache.aupdate("prompt", "llm", gen)
    assert await cache.alookup("prompt", "llm") == gen
    model = FakeListChatModel(responses=["first", "second"], cache=cache)
    assert (await model.ainvoke("hi")).content == "first"
    assert (await model.ainvoke("hi")).content == "first"  # served from Valkey through GLIDE
    assert await cache.ainvalidate_source("doc.md") == 1
    assert await cache.alookup("prompt", "llm") is None
    assert (await cache.astats())["totals"]["hits"] == 2
