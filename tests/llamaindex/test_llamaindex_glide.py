"""LlamaIndex's `CachedLLM` over a Valkey GLIDE client (asyncio): async completions and chats hit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole

import llamaindex_valkey_cache
from llamaindex_support import CountingLLM

pytestmark = pytest.mark.glide


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


async def test_cached_llm_async_over_glide(glide_async_client: Any, prefix: str) -> None:
    cache = llamaindex_valkey_cache.LlamaIndexCache(client=glide_async_client, prefix=prefix)
    inner = CountingLLM()
    llm = llamaindex_valkey_cache.CachedLLM(llm=inner, cache=cache)
    first = await llm.acomplete("async prompt")
    assert (await llm.acomplete("async prompt")).text == first.text
    chat = await llm.achat(user("async chat"))
    assert (await llm.achat(user("async chat"))).message.content == chat.message.content
    texts = await asyncio.gather(*(llm.acomplete(f"p{i}") for i in range(8)))
    assert [t.text for t in await asyncio.gather(*(llm.acomplete(f"p{i}") for i in range(8)))] == [
        t.text for t in texts
    ]
    assert inner.calls == 10
