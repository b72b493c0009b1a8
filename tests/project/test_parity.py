"""Sync and async twins: every public sync method of the core and of each adapter class has an async twin
with the same parameters, so the two APIs cannot drift apart.

A twin is ``a<name>`` (``async_<name>`` where the framework names it so, as LlamaIndex's ``async_add``).
Only methods our classes define count (what a framework base class defines is its business); the few sync
methods without a twin are listed with the reason, and a listed name that gets a twin must leave the list.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import langchain_valkey_cache
import llamaindex_valkey_cache
import valkey_rag_cache

OURS = ("valkey_rag_cache", "langchain_valkey_cache", "llamaindex_valkey_cache")

# Sync-only on purpose: no I/O, or a framework hook the framework itself calls only in sync form.
NO_IO = {"key", "seen", "sources", "scoped_sources", "source_of", "sources_of", "captured_sources"}
NO_IO |= {"check_namespace"}
NO_IO |= {"make_core", "class_name", "model_post_init"}  # LlamaIndex's class name, pydantic's generated hook
SYNC_ONLY: dict[str, set[str]] = {
    "CachedRunnable": {"get_input_schema", "get_output_schema"},  # Runnable schema: sync in LangChain
    "CachedFunctionCallingLLM": {"get_tool_calls_from_response"},  # parsing a response: no I/O
    "CachedQueryEngine": {"retrieve"},  # BaseQueryEngine has no aretrieve
    "InvalidatingPydanticVectorStore": {"persist"},  # BasePydanticVectorStore.persist is sync only
    "InvalidatingDocstore": {"persist", "docs"},  # sync only in BaseDocumentStore
    "InvalidatingVectorStore": {"from_texts"},  # refuses (wrap an existing store): nothing to await
}

CLASSES: dict[str, type[Any]] = {
    "AnswerCache": valkey_rag_cache.AnswerCache,
    "ValkeyCache": langchain_valkey_cache.ValkeyCache,
    "CachedRunnable": langchain_valkey_cache.CachedRunnable,
    "InvalidatingVectorStore": langchain_valkey_cache.InvalidatingVectorStore,
    "LlamaIndexCache": llamaindex_valkey_cache.LlamaIndexCache,
    "CachedLLM": llamaindex_valkey_cache.CachedLLM,
    "CachedFunctionCallingLLM": llamaindex_valkey_cache.CachedFunctionCallingLLM,
    "CachedQueryEngine": llamaindex_valkey_cache.CachedQueryEngine,
    "InvalidatingPydanticVectorStore": llamaindex_valkey_cache.InvalidatingPydanticVectorStore,
    "InvalidatingDocstore": llamaindex_valkey_cache.InvalidatingDocstore,
}


def own_methods(cls: type[Any]) -> dict[str, Any]:
    """Public functions defined by our classes in `cls`'s MRO (nearest first), not by a framework's."""
    out: dict[str, Any] = {}
    for klass in cls.__mro__:
        if not klass.__module__.startswith(OURS):
            continue
        for name, attr in vars(klass).items():
            func = attr.__func__ if isinstance(attr, classmethod | staticmethod) else attr
            if not name.startswith("_") and inspect.isfunction(func):
                out.setdefault(name, getattr(cls, name))
    return out


def is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)


def params(func: Any) -> list[tuple[str, Any, Any, Any]]:
    return [(p.name, p.kind, p.default, p.annotation) for p in inspect.signature(func).parameters.values()]


def twin_of(name: str, methods: dict[str, Any], cls: type[Any]) -> Any:
    for candidate in (f"a{name}", f"async_{name}"):
        if candidate in methods or hasattr(cls, candidate):
            return getattr(cls, candidate)
    return None


@pytest.mark.parametrize("label", list(CLASSES))
def test_every_sync_method_has_an_async_twin_with_the_same_parameters(label: str) -> None:
    cls = CLASSES[label]
    methods = own_methods(cls)
    exempt = NO_IO | SYNC_ONLY.get(label, set())
    missing, differing = [], []
    for name, func in sorted(methods.items()):
        if is_async(func) or name in exempt:
            continue
        if name.startswith("a") and name[1:] in methods:  # an async twin that happens to be sync: wrong
            differing.append(f"{name} is not async")
            continue
        twin = twin_of(name, methods, cls)
        if twin is None:
            missing.append(name)
        elif not is_async(twin):
            differing.append(f"{twin.__name__} is not async")
        elif params(twin) != params(func):
            differing.append(f"{name}{inspect.signature(func)} vs {twin.__name__}{inspect.signature(twin)}")
    assert not missing, f"{label}: no async twin for {missing}"
    assert not differing, f"{label}: {differing}"


@pytest.mark.parametrize("label", list(SYNC_ONLY))
def test_the_sync_only_list_names_only_what_the_class_defines(label: str) -> None:
    cls = CLASSES[label]
    for name in SYNC_ONLY[label]:
        assert name in own_methods(cls) or isinstance(inspect.getattr_static(cls, name), property), name


def test_the_adapters_caches_have_every_operation_of_the_core_with_its_signature() -> None:
    protocol = {n for n in vars(valkey_rag_cache.Operations) if not n.startswith("_")}
    protocol |= {n for n in vars(valkey_rag_cache.Invalidates) if not n.startswith("_")}
    for cls in (langchain_valkey_cache.ValkeyCache, llamaindex_valkey_cache.LlamaIndexCache):
        for name in sorted(protocol):
            ours, core = getattr(cls, name), getattr(valkey_rag_cache.AnswerCache, name)
            assert params(ours) == params(core), (cls, name)
            assert is_async(ours) == is_async(core), (cls, name)
