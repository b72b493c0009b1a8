"""What the benchmark caches: a ~1.5 KB chat answer with tool calls and usage, as each framework holds it.

Example:
    >>> msg = ai_message()
    >>> 1200 < len(json.dumps(message_value(msg))) < 1800
    True
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

__all__ = [
    "PROMPT",
    "LLM_STRING",
    "ai_message",
    "chat_generation",
    "message_value",
    "source_ids",
    "small_value",
]

# A prompt and an llm_string shaped like a chat model's: serialized params, then the bound tools.
PROMPT = (
    '[{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"], '
    '"kwargs": {"content": "Context: ... Question: how long is the refund window for annual plans? #{i}", '
    '"type": "human"}}]'
)
LLM_STRING = (
    '{"lc": 1, "type": "constructor", "id": ["langchain", "chat_models", "openai", "ChatOpenAI"], "kwargs": '
    '{"model_name": "gpt-4o-mini", "temperature": 0.0, "openai_api_key": {"lc": 1, "type": "secret", "id": '
    '["OPENAI_API_KEY"]}, "max_retries": 2, "n": 1}, "name": "ChatOpenAI"}---[(\'_type\', \'openai-chat\'), '
    "('stop', None), ('tools', [{'type': 'function', 'function': {'name': 'lookup_policy', 'description': "
    "'Look up a policy', 'parameters': {'type': 'object', 'properties': {'policy': {'type': 'string'}, "
    "'plan': {'type': 'string'}}, 'required': ['policy']}}}])]"
)

_TEXT = "The refund window for annual plans is 30 days from the renewal date. " * 12


def ai_message() -> Any:
    """An `AIMessage` of ~1.5 KB serialized, with a tool call, usage and response metadata."""
    from langchain_core.messages import AIMessage

    return AIMessage(
        content=_TEXT,
        tool_calls=[
            {
                "name": "lookup_policy",
                "args": {"policy": "refunds", "plan": "annual", "region": "EU"},
                "id": "call_8f3a1c2b9d",
            }
        ],
        usage_metadata={
            "input_tokens": 1834,
            "output_tokens": 212,
            "total_tokens": 2046,
            "input_token_details": {"cache_read": 1024},
            "output_token_details": {"reasoning": 64},
        },
        response_metadata={
            "model_name": "gpt-4o-mini-2024-07-18",
            "finish_reason": "tool_calls",
            "system_fingerprint": "fp_0ba0d124f1",
        },
        id="run-3f1c5a7e-5b8e-4a7e-9a63-0c6c2f7b1d42-0",
    )


def chat_generation() -> Any:
    from langchain_core.outputs import ChatGeneration

    return ChatGeneration(message=ai_message())


def message_value(msg: Any = None) -> dict[str, Any]:
    """The JSON value the core stores in the core-only cases: LangChain's own message dict."""
    from langchain_core.messages import message_to_dict

    return message_to_dict(msg if msg is not None else ai_message())


def small_value(i: int) -> dict[str, Any]:
    """A short answer, for the million-entry fills (same entry format, less memory)."""
    return {"answer": f"Answer number {i}: the refund window is 30 days.", "n": i}


def source_ids(rng: random.Random, count: int, pool: int = 2000) -> list[str]:
    """`count` distinct document ids drawn from a knowledge base of `pool` documents."""
    return [f"kb/policies/doc-{n:05d}.md" for n in rng.sample(range(pool), count)]


def llamaindex_llm(before: Callable[[], Any] | None = None) -> Any:
    """A LlamaIndex LLM that answers at once with a fixed ~1.5 KB chat response (tool call included).

    With `before`, each chat calls it first: given a raw GET, the fake LLM does one network round trip, as
    a cache hit does, so LlamaIndex's own cost can be measured around a call that waits on a socket.
    """
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        CompletionResponse,
        CompletionResponseGen,
        LLMMetadata,
        MessageRole,
    )
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback

    reply = ChatMessage(
        role=MessageRole.ASSISTANT,
        content=_TEXT,
        additional_kwargs={
            "tool_calls": [
                {
                    "id": "call_8f3a1c2b9d",
                    "type": "function",
                    "function": {"name": "lookup_policy", "arguments": json.dumps({"policy": "refunds"})},
                }
            ],
            "usage": {"prompt_tokens": 1834, "completion_tokens": 212, "total_tokens": 2046},
        },
    )

    class FixedLLM(CustomLLM):
        """Answers every chat with the same message, instantly: the LLM's own cost is ~0."""

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="fixed-bench", is_chat_model=True)

        @llm_chat_callback()
        def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
            if before is not None:
                before()
            return ChatResponse(message=reply.model_copy())

        @llm_chat_callback()
        async def achat(self, messages: Any, **kwargs: Any) -> ChatResponse:
            return ChatResponse(message=reply.model_copy())

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text=_TEXT)

        @llm_completion_callback()
        def stream_complete(
            self, prompt: str, formatted: bool = False, **kwargs: Any
        ) -> CompletionResponseGen:
            yield CompletionResponse(text=_TEXT, delta=_TEXT)

    return FixedLLM()


def llamaindex_messages(i: int) -> list[Any]:
    from llama_index.core.base.llms.types import ChatMessage, MessageRole

    return [
        ChatMessage(role=MessageRole.SYSTEM, content="Answer from the context only."),
        ChatMessage(
            role=MessageRole.USER, content=f"Context: ... Question: refund window for annual plans? #{i}"
        ),
    ]
