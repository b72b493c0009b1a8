"""What about a query engine selects its answers, read off the engine for `CachedQueryEngine`'s keys.

Two engines over one index that differ in their retriever's filters, document or node ids, query mode,
``top_k``, node postprocessors, synthesizer, prompts or LLM give different answers to the same query, so
each of these is part of the shape. Only components whose settings are all known can be read in full:
``index.as_query_engine(...)`` over a vector or summary index (a `RetrieverQueryEngine`, with LlamaIndex's
own synthesizers and postprocessors). For anything else (custom engines and retrievers, routers,
sub-question engines) the shape lists what it could not read in ``unread``, and the engine needs a
``name=`` that stands for it.

Which *data* an engine searches (the index or vector store itself) is never part of the shape: an index
rebuilt from the same vector store in another process must find the same answers.

Example:
    >>> shape = engine_shape(index.as_query_engine(filters=tenant_a))  # doctest: +SKIP
    >>> shape.parts["retriever"]["filters"]  # doctest: +SKIP
    {'filters': [{'key': 'tenant', 'value': 'a', 'operator': '=='}], 'condition': 'and'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.indices.list.retrievers import SummaryIndexEmbeddingRetriever, SummaryIndexRetriever
from llama_index.core.indices.vector_store.retrievers import VectorIndexRetriever
from llama_index.core.query_engine import RetrieverQueryEngine
from pydantic import BaseModel

from .keying import jsonable, llm_identity, qualified, settings_of

__all__ = ["Shape", "engine_shape"]

# LlamaIndex's own components (core and integrations) keep every setting in pydantic fields or in the
# attributes read below; a class defined elsewhere may keep what matters anywhere.
_LLAMAINDEX = "llama_index."


@dataclass(frozen=True, slots=True)
class Shape:
    """The JSON parts of an engine's shape, and the components whose settings could not be read."""

    parts: dict[str, Any]
    unread: tuple[str, ...]


def engine_shape(engine: BaseQueryEngine) -> Shape:
    unread: list[str] = []
    prompts = {name: prompt.get_template() for name, prompt in sorted(engine.get_prompts().items())}
    parts: dict[str, Any] = {"engine": qualified(type(engine)), "prompts": prompts}
    if type(engine) is RetrieverQueryEngine:
        parts["retriever"] = _retriever(engine.retriever, unread)
        parts["synthesizer"] = _synthesizer(engine._response_synthesizer, unread)
        parts["postprocessors"] = [_postprocessor(p, unread) for p in engine._node_postprocessors]
    else:
        unread.append(f"query engine {qualified(type(engine))}")
        synthesizer = getattr(engine, "_response_synthesizer", None)
        llm = getattr(synthesizer, "_llm", None)
        parts["llm"] = llm_identity(llm) if llm is not None and hasattr(llm, "metadata") else None
    return Shape(parts, tuple(unread))


def _retriever(retriever: Any, unread: list[str]) -> dict[str, Any]:
    kind = type(retriever)
    parts: dict[str, Any] = {"class": qualified(kind)}
    if getattr(retriever, "object_map", None):
        # Nodes that point to other retrievers or engines: what those answer from is not readable here.
        unread.append("a retriever's object_map")
    if kind is VectorIndexRetriever:
        parts.update(
            top_k=retriever._similarity_top_k,
            mode=jsonable(retriever._vector_store_query_mode),
            filters=jsonable(retriever._filters),
            doc_ids=sorted(retriever._doc_ids) if retriever._doc_ids is not None else None,
            node_ids=_node_ids(retriever),
            alpha=retriever._alpha,
            sparse_top_k=retriever._sparse_top_k,
            hybrid_top_k=retriever._hybrid_top_k,
            vector_store_kwargs=jsonable(retriever._kwargs),
            embed_model=_component(retriever._embed_model),
        )
    elif kind is SummaryIndexEmbeddingRetriever:
        parts.update(top_k=retriever._similarity_top_k, embed_model=_component(retriever._embed_model))
    elif kind is not SummaryIndexRetriever:  # which returns every node of its index: nothing to read
        unread.append(f"retriever {qualified(kind)}")
    return parts


def _node_ids(retriever: VectorIndexRetriever) -> Any:
    """The ids a vector retriever is limited to; "index" when they are its index's own nodes.

    ``as_retriever()`` passes every node id of an index that keeps them (one over a SimpleVectorStore):
    keying on that list would make every ingestion run a new key for every answer.
    """
    ids = retriever._node_ids
    if ids is None:
        return None
    nodes_dict = getattr(getattr(retriever._index, "index_struct", None), "nodes_dict", None)
    if isinstance(nodes_dict, dict) and ids == list(nodes_dict.values()):
        return "index"
    return sorted(ids)


def _synthesizer(synthesizer: Any, unread: list[str]) -> dict[str, Any]:
    kind = type(synthesizer)
    if not kind.__module__.startswith(_LLAMAINDEX):
        unread.append(f"response synthesizer {qualified(kind)}")
    llm = getattr(synthesizer, "_llm", None)
    return {
        "class": qualified(kind),
        "llm": llm_identity(llm) if llm is not None and hasattr(llm, "metadata") else None,
        "output_cls": jsonable(getattr(synthesizer, "_output_cls", None)),
        "structured_answer_filtering": getattr(synthesizer, "_structured_answer_filtering", None),
        "empty_response": getattr(synthesizer, "_empty_response", None),
        "multimodal": getattr(synthesizer, "_multimodal", None),
    }


def _postprocessor(postprocessor: Any, unread: list[str]) -> dict[str, Any] | None:
    kind = type(postprocessor)
    if not kind.__module__.startswith(_LLAMAINDEX) or not isinstance(postprocessor, BaseModel):
        unread.append(f"node postprocessor {qualified(kind)}")
    return _component(postprocessor)


def _component(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    settings = settings_of(obj) if isinstance(obj, BaseModel) else None
    return {"class": qualified(type(obj)), "settings": settings}
