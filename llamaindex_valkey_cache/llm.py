"""`CachedLLM`: any LlamaIndex LLM behind the Valkey cache, usable as ``Settings.llm``.

A miss calls the inner LLM and stores its response with the documents retrieved for the call as sources
(see `tracking`); a hit returns the stored response without calling it. Streams are stored once fully read
and replayed chunk by chunk on a hit; a stream that is abandoned or fails is never stored. Chat and stream
chat share entries, as do complete and stream complete: a stored chat answers a later stream and back.

Around a `FunctionCallingLLM`, ``CachedLLM(...)`` builds a `CachedFunctionCallingLLM`, which also delegates
the tool-calling hooks, so ``chat_with_tools``, ``predict_and_call``, ``structured_predict`` and agents work.

Example:
    >>> from llama_index.core import Settings
    >>> cache = LlamaIndexCache("valkey://localhost:6379")  # doctest: +SKIP
    >>> Settings.llm = CachedLLM(llm=OpenAI(model="gpt-4o-mini"), cache=cache)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable, Generator, Iterable, Sequence
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from pydantic import Field, PrivateAttr, SerializeAsAny

from valkey_rag_cache import AnswerCache, EntryKey, Seen, Source
from valkey_rag_cache.digests import fields_digest, json_field
from valkey_rag_cache.keys import validate_namespace
from valkey_rag_cache.streams import arecorded, recorded

from . import codec
from .cache import LlamaIndexCache
from .keying import IdentityMemo, jsonable, messages_json
from .tracking import current_retrievals, install

__all__ = ["CachedFunctionCallingLLM", "CachedLLM"]

R = TypeVar("R", ChatResponse, CompletionResponse)
Encoder = Callable[[Any, list[str]], dict[str, Any] | None]  # a final response and its deltas -> an entry

# The fields that shape prompts in `LLM.predict`, `stream` and `structured_predict`; copied from the inner LLM
# so that a prompt formatted by the wrapper is the prompt the inner LLM would have formatted.
PROMPT_FIELDS = (
    "system_prompt",
    "messages_to_prompt",
    "completion_to_prompt",
    "output_parser",
    "query_wrapper_prompt",
    "pydantic_program_mode",
)

CHAT = "llamaindex.chat"
COMPLETION = "llamaindex.completion"


class CachedLLM(LLM):
    """An LLM that answers from the Valkey cache and otherwise asks `llm`.

    Args:
        llm: the LLM to cache; a `FunctionCallingLLM` gets a `CachedFunctionCallingLLM`.
        cache: the `LlamaIndexCache` holding the answers.
        namespace: store this LLM's answers in another namespace than the cache's.

    Example:
        >>> llm = CachedLLM(llm=MockLLM(max_tokens=8), cache=LlamaIndexCache())  # doctest: +SKIP
        >>> llm.complete("Hello").text  # second call served from Valkey  # doctest: +SKIP
    """

    llm: SerializeAsAny[LLM] = Field(description="The LLM whose answers are cached.")
    namespace: str | None = Field(
        default=None, description="Namespace of the entries (default: the cache's)."
    )
    _cache: LlamaIndexCache = PrivateAttr()
    _keys: _KeyMemo = PrivateAttr()

    def __new__(cls, *args: Any, **kwargs: Any) -> CachedLLM:
        inner = kwargs.get("llm", args[0] if args else None)
        if cls is CachedLLM and isinstance(inner, FunctionCallingLLM):
            cls = CachedFunctionCallingLLM
        return super().__new__(cls)

    def __init__(
        self, llm: LLM, cache: LlamaIndexCache, *, namespace: str | None = None, **kwargs: Any
    ) -> None:
        if not isinstance(llm, LLM):
            raise TypeError(f"llm must be a LlamaIndex LLM, got {type(llm).__name__}")
        if not isinstance(cache, LlamaIndexCache):
            raise TypeError(f"cache must be a LlamaIndexCache, got {type(cache).__name__}")
        if namespace is not None:
            cache.core.check_namespace(namespace)  # a confined cache refuses another tree here, not per call
        shaping = {name: getattr(llm, name) for name in PROMPT_FIELDS}
        super().__init__(  # type: ignore[call-arg]  # pydantic fields; mypy sees LLM's own __init__
            llm=llm,
            namespace=namespace,
            callback_manager=llm.callback_manager,
            **{**shaping, **kwargs},
        )
        self._cache = cache
        self._keys = _KeyMemo(cache.core)
        install()

    @classmethod
    def class_name(cls) -> str:
        return "CachedLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return self.llm.metadata

    @property
    def cache(self) -> LlamaIndexCache:
        return self._cache

    @property
    def _memo(self) -> _KeyMemo:
        # Read from pydantic's store directly: ``self._keys`` first fails the normal attribute lookup (an
        # AttributeError, then pydantic's __getattr__), about 2 us, twice per hit.
        return self.__pydantic_private__["_keys"]  # type: ignore[index,no-any-return]

    @property
    def _core(self) -> AnswerCache:
        return self._memo.core

    # -- keys, sources, lookups ------------------------------------------------------------------------

    def _key(self, kind: str, call: dict[str, Any]) -> EntryKey:
        # Length-prefixed fields (`digests`): the inner LLM's identity first, as JSON text kept while its
        # settings and metadata stay the same (`IdentityMemo`), then the call (already JSON data) as
        # sorted-key JSON.
        memo = self._memo
        core = memo.core
        namespace = self.namespace or core.namespace
        if namespace is not memo.namespace:  # validated once per namespace, not per call
            memo.namespace = core.check_namespace(validate_namespace(namespace))
        identity = memo.identity.text(self.llm)
        return EntryKey(namespace, fields_digest(kind, identity, json_field(call)))

    def _chat_key(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> EntryKey:
        return self._key(CHAT, {"messages": messages_json(messages), "kwargs": jsonable(kwargs)})

    def _completion_key(self, prompt: str, formatted: bool, kwargs: dict[str, Any]) -> EntryKey:
        call = {"prompt": prompt, "formatted": formatted, "kwargs": kwargs}
        return self._key(COMPLETION, jsonable(call))

    def _sources(self) -> list[Source]:
        return self._cache.sources_of(current_retrievals())

    # -- chat ------------------------------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        key = self._chat_key(messages, kwargs)
        hit = self._core.lookup(key, codec.decode_chat)
        if hit is not None:
            return _final(hit.value)
        sources = self._sources()
        response = self.llm.chat(messages, **kwargs)
        self._store(key, codec.encode_chat(response), sources)
        return response

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        key = self._chat_key(messages, kwargs)
        hit = await self._core.alookup(key, codec.decode_chat)
        if hit is not None:
            return _final(hit.value)
        sources = self._sources()
        response = await self.llm.achat(messages, **kwargs)
        await self._astore(key, codec.encode_chat(response), sources)
        return response

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        key = self._chat_key(messages, kwargs)
        hit = self._core.lookup(key, codec.decode_chat)
        if hit is not None:
            return _replay(codec.replay_chat(hit.value))
        sources = self._sources()  # now, while the caller's span is active: the stream is read later
        stream = self.llm.stream_chat(messages, **kwargs)
        return self._recorded(stream, codec.encode_chat, key, sources)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        key = self._chat_key(messages, kwargs)
        hit = await self._core.alookup(key, codec.decode_chat)
        if hit is not None:
            return _areplay(codec.replay_chat(hit.value))
        sources = self._sources()
        stream = await self.llm.astream_chat(messages, **kwargs)
        return self._arecorded(stream, codec.encode_chat, key, sources)

    # -- completion ------------------------------------------------------------------------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        key = self._completion_key(prompt, formatted, kwargs)
        hit = self._core.lookup(key, codec.decode_completion)
        if hit is not None:
            return _final(hit.value)
        sources = self._sources()
        response = self.llm.complete(prompt, formatted=formatted, **kwargs)
        self._store(key, codec.encode_completion(response), sources)
        return response

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        key = self._completion_key(prompt, formatted, kwargs)
        hit = await self._core.alookup(key, codec.decode_completion)
        if hit is not None:
            return _final(hit.value)
        sources = self._sources()
        response = await self.llm.acomplete(prompt, formatted=formatted, **kwargs)
        await self._astore(key, codec.encode_completion(response), sources)
        return response

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        key = self._completion_key(prompt, formatted, kwargs)
        hit = self._core.lookup(key, codec.decode_completion)
        if hit is not None:
            return _replay(codec.replay_completion(hit.value))
        sources = self._sources()
        stream = self.llm.stream_complete(prompt, formatted=formatted, **kwargs)
        return self._recorded(stream, codec.encode_completion, key, sources)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        key = self._completion_key(prompt, formatted, kwargs)
        hit = await self._core.alookup(key, codec.decode_completion)
        if hit is not None:
            return _areplay(codec.replay_completion(hit.value))
        sources = self._sources()
        stream = await self.llm.astream_complete(prompt, formatted=formatted, **kwargs)
        return self._arecorded(stream, codec.encode_completion, key, sources)

    # -- writes: an answer the codec cannot store faithfully (None) is returned, not cached --------------

    def _store(self, key: EntryKey, value: Any, sources: list[Source], seen: Seen | None = None) -> None:
        if value is not None:
            self._core.store(key, value, sources, seen=seen)

    async def _astore(
        self, key: EntryKey, value: Any, sources: list[Source], seen: Seen | None = None
    ) -> None:
        if value is not None:
            await self._core.astore(key, value, sources, seen=seen)

    def _recorded(
        self, stream: Iterable[Any], encode: Encoder, key: EntryKey, sources: list[Source]
    ) -> Generator[Any, None, None]:
        """The stream's chunks, stored once it ran to its end (`streams.recorded`)."""
        seen = self._core.seen(key)  # now: the stream is read later, maybe in another context
        return recorded(stream, lambda chunks: self._store(key, _encoded(encode, chunks), sources, seen))

    def _arecorded(
        self, stream: AsyncIterable[Any], encode: Encoder, key: EntryKey, sources: list[Source]
    ) -> AsyncGenerator[Any, None]:
        seen = self._core.seen(key)
        return arecorded(stream, lambda chunks: self._astore(key, _encoded(encode, chunks), sources, seen))


class CachedFunctionCallingLLM(CachedLLM, FunctionCallingLLM):
    """`CachedLLM` around a `FunctionCallingLLM`: calls go through the cache, tool hooks to the inner LLM.

    ``chat_with_tools`` prepares its call with the inner LLM's ``_prepare_chat_with_tools`` and sends it
    through the cached ``chat``, so the tools are part of the key.
    """

    llm: SerializeAsAny[FunctionCallingLLM] = Field(
        description="The function-calling LLM whose answers are cached."
    )

    @classmethod
    def class_name(cls) -> str:
        return "CachedFunctionCallingLLM"

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        # The inner LLM's compat path drops `tool_required` for integrations that predate it.
        return self.llm._prepare_chat_with_tools_compat(
            tools,
            user_msg=user_msg,
            chat_history=chat_history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[Any],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        return self.llm._validate_chat_with_tools_response(
            response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs
        )

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        return self.llm.get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs
        )


class _KeyMemo:
    """What a `CachedLLM`'s calls reuse: its core cache, the namespace last validated, the LLM's identity."""

    __slots__ = ("core", "identity", "namespace")

    def __init__(self, core: AnswerCache) -> None:
        self.core = core
        self.namespace: str | None = None
        self.identity = IdentityMemo()


def _encoded(encode: Encoder, chunks: list[Any]) -> dict[str, Any] | None:
    """A whole stream's entry: its last chunk (the final response) and the deltas it arrived in."""
    return encode(chunks[-1], [c.delta or "" for c in chunks]) if chunks else None


def _final(entry: codec.LLMEntry[R]) -> R:
    """A stored response as a non-streaming call returns it (a stream's last chunk carries no delta)."""
    if entry.deltas is None:
        return entry.response
    return entry.response.model_copy(update={"delta": None})


def _replay(chunks: list[Any]) -> Generator[Any, None, None]:
    yield from chunks


async def _areplay(chunks: list[Any]) -> AsyncGenerator[Any, None]:
    for chunk in chunks:
        yield chunk
