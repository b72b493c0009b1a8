"""Entry digests of text fields, for adapters whose inputs are strings: cheaper than a JSON encoding.

The digest is BLAKE2b (16 bytes, URL-safe base64, like every other digest in a key) over a structured,
unambiguous encoding: the kind, then each field, each as an 8-byte big-endian byte length followed by its
UTF-8 bytes (``surrogatepass``, so any ``str`` encodes, and distinct strings give distinct bytes). A
sequence of such frames reads back one way only, so distinct (kind, fields...) never share an encoding,
however their text shifts between fields. BLAKE2b's personalization keeps these digests apart from the
JSON-encoded ones of `AnswerCache.key`.

The first field is meant for what repeats from call to call (a model's settings): the hash state after it is
kept, and each digest continues a copy of it.

Example:
    >>> fields_digest("lc", "model=gpt", "Hello") == fields_digest("lc", "model=gpt", "Hello")
    True
    >>> fields_digest("lc", "model=gp", "tHello") == fields_digest("lc", "model=gpt", "Hello")
    False
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from .jsonbytes import _orjson, _plain
from .keys import _b64

__all__ = ["encode_fields", "fields_digest", "json_field"]

_PERSON = b"vrc-fields-v1"  # BLAKE2b personalization: at most 16 bytes
_SIZE = 16


# Sorted keys; subclasses (str enums...), dataclasses and datetimes are refused, so json writes them.
_ORJSON_OPTIONS = (
    _orjson.OPT_SORT_KEYS
    | _orjson.OPT_PASSTHROUGH_SUBCLASS
    | _orjson.OPT_PASSTHROUGH_DATACLASS
    | _orjson.OPT_PASSTHROUGH_DATETIME
    if _orjson is not None
    else 0
)


def _frame(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return len(data).to_bytes(8, "big") + data


def encode_fields(kind: str, *fields: str) -> bytes:
    """The bytes `fields_digest` hashes (for tests and for reading the format)."""
    return b"".join(_frame(text) for text in (kind, *fields))


@lru_cache(maxsize=256)
def _head(kind: str, first: str) -> hashlib.blake2b:
    # Never updated after this: callers continue a copy.
    state = hashlib.blake2b(digest_size=_SIZE, person=_PERSON)
    state.update(_frame(kind))
    state.update(_frame(first))
    return state


def fields_digest(kind: str, first: str, *rest: str) -> str:
    """The digest of `encode_fields` (kind, first, *rest), continuing the cached state after `first`."""
    if not (isinstance(kind, str) and isinstance(first, str)):
        raise TypeError("digest fields are strings")
    state = _head(kind, first).copy()
    for text in rest:
        if not isinstance(text, str):
            raise TypeError("digest fields are strings")
        state.update(_frame(text))
    return _b64(state.digest())


def json_field(value: Any) -> str:
    """Deterministic JSON text of JSON data (sorted keys, compact, UTF-8 as is), for a field of a digest.

    orjson writes it when that gives one text per value: it writes NaN and the infinities as ``null``, so
    a text holding ``null`` is kept only for plain data (exact JSON types, finite floats). Anything else
    (NaN, non-string keys, ints beyond 64 bits, lone surrogates, subclasses, dataclasses, datetimes) is
    written by ``json``, which writes ``NaN`` rather than ``null``. Meant for what `jsonable`-style
    conversions return: equal data, equal text.

    >>> json_field({"b": [1, 2.5], "a": None})
    '{"a":null,"b":[1,2.5]}'
    >>> json_field(float("nan"))
    'NaN'
    """
    if _orjson is not None:
        try:
            out: bytes = _orjson.dumps(value, option=_ORJSON_OPTIONS)
        except _orjson.JSONEncodeError:  # a non-str key, an int beyond 64 bits, a lone surrogate, an object
            pass
        else:
            if b"null" not in out or _plain(value):  # no null: no NaN either (a "null" in a string: checked)
                return out.decode()
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except TypeError as exc:
        raise TypeError(f"digest fields must be JSON-serializable: {exc}") from None
