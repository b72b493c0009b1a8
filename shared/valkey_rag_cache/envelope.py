"""The entry body: format version, content type, creation time, sources and the adapter's value, as JSON.

The header with the dependency tokens is written and checked by the server-side scripts; this module only
owns the JSON body. Anything unreadable decodes to None, which the cache turns into a counted miss.
JSON is data only: nothing in stored bytes can name a class, run code or read the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import jsonbytes

__all__ = ["FORMAT", "Hit", "encode_body", "decode_body"]

FORMAT = 1
JSON = Any
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Hit(Generic[V]):
    """A cached value (stored JSON, or what the caller's decoder made of it) and what it was built from."""

    value: V
    sources: tuple[str, ...]
    content_type: str | None
    created_at: float


def encode_body(value: JSON, sources: tuple[str, ...], content_type: str | None, created_at: float) -> bytes:
    # Compact UTF-8 JSON; NaN and infinities are refused (ValueError), other non-JSON values (TypeError).
    return jsonbytes.dumps(
        {"f": FORMAT, "ct": content_type, "at": created_at, "src": list(sources), "v": value}
    )


def decode_body(raw: bytes) -> Hit[JSON] | None:
    try:
        doc = jsonbytes.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("f") != FORMAT or "v" not in doc:
        return None
    src, ct, at = doc.get("src"), doc.get("ct"), doc.get("at")
    if not isinstance(src, list) or not all(isinstance(s, str) for s in src):
        return None
    if ct is not None and not isinstance(ct, str):
        return None
    if not isinstance(at, int | float) or isinstance(at, bool):
        return None
    return Hit(doc["v"], tuple(src), ct, float(at))
