"""The framework adapters under test, when they import; otherwise the reason they could not be measured.

Example:
    >>> lc = langchain_cache("valkey://127.0.0.1:6379", prefix="bench", namespace="lc")  # doctest: +SKIP
    >>> lc.available, lc.reason  # doctest: +SKIP
    (True, '')
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

__all__ = ["Adapter", "langchain_cache", "llamaindex_llm"]


@dataclass
class Adapter:
    cache: Any = None  # the adapter's cache object (ValkeyCache)
    llm: Any = None  # LlamaIndex: the CachedLLM wrapping a fixed fake LLM
    inner: Any = None  # LlamaIndex: that fake LLM, to measure the framework without any cache
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.cache is not None


def _kwargs(cls: Any, **wanted: Any) -> dict[str, Any]:
    """Pass only the options the adapter's constructor declares (its API is the adapters' to settle)."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return wanted
    return {k: v for k, v in wanted.items() if k in params}


def langchain_cache(url: str, *, prefix: str, namespace: str, timeout: float) -> Adapter:
    try:
        from langchain_valkey_cache import ValkeyCache
    except ImportError as exc:
        return Adapter(reason=f"langchain_valkey_cache.ValkeyCache does not import ({exc})")
    cache = ValkeyCache(url, **_kwargs(ValkeyCache, prefix=prefix, namespace=namespace, timeout=timeout))
    return Adapter(cache=cache)


def llamaindex_llm(url: str, *, prefix: str, namespace: str, timeout: float) -> Adapter:
    try:
        from llamaindex_valkey_cache import CachedLLM, LlamaIndexCache
    except ImportError as exc:
        return Adapter(reason=f"llamaindex_valkey_cache.CachedLLM does not import ({exc})")
    from payloads import llamaindex_llm as fixed_llm

    cache = LlamaIndexCache(
        url, **_kwargs(LlamaIndexCache, prefix=prefix, namespace=namespace, timeout=timeout)
    )
    inner = fixed_llm()
    return Adapter(cache=cache, llm=CachedLLM(llm=inner, cache=cache), inner=inner)
