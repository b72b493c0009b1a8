"""JSON to and from UTF-8 bytes, through orjson where it gives exactly what the standard library gives.

orjson is several times faster on an entry body, but it differs from ``json`` at the edges, so it is used
only where it cannot change a result:

- writing: only values made of exact ``dict`` / ``list`` / ``tuple`` / ``str`` / ``int`` / ``bool`` /
  ``None`` and finite ``float``, nested at most `_DEPTH` deep (orjson writes NaN as ``null`` and
  writes dataclasses, datetimes, UUIDs and enums, all of which ``json`` refuses); anything orjson still
  refuses (non-string keys, ints beyond 64 bits, lone surrogates) goes to ``json`` too, whose errors stand;
- reading: orjson first; what it refuses (``NaN`` literals, escaped lone surrogates, bytes that are not
  UTF-8) is read by ``json``, and so are bytes holding a run of 19 or more digits, because orjson reads an
  integer beyond 64 bits as a float; bytes orjson itself wrote (`dumps_orjson`) hold no such integer, and
  `loads_orjson_written` reads them without that scan.

Without orjson installed, both sides are ``json`` alone.

Example:
    >>> dumps({"a": [1, 2.5, None]})
    b'{"a":[1,2.5,null]}'
    >>> loads(b'{"big": 123456789012345678901234567890}')
    {'big': 123456789012345678901234567890}
    >>> dumps({"x": float("nan")})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: Out of range float values are not JSON compliant...
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

__all__ = ["dumps", "dumps_json", "dumps_orjson", "loads", "loads_orjson_written"]

_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # optional: the json module gives the same results, slower
    _orjson = None

_LEAVES = frozenset({str, int, bool, type(None)})
_DEPTH = 64  # deeper values are rare; json takes them (and its recursion rules stand)
# Maps each digit to "0" and every other byte to ".": a run of 19 "0"s is a run of 19 digits.
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
_LONG_RUN = b"0" * 19  # 2**63 has 19 digits: shorter integers always fit orjson's 64 bits


def _plain(value: Any, depth: int = 0) -> bool:
    """Is `value` made of exact JSON types only, with finite floats (what orjson writes as json would)?"""
    kind = type(value)
    if kind is dict:
        children: Any = value.values()  # keys: orjson itself refuses any that is not a str
    elif kind is list or kind is tuple:
        children = value
    elif kind is float:
        return bool(value - value == 0.0)  # false for NaN and the infinities
    else:
        return kind in _LEAVES
    if depth >= _DEPTH:
        return False
    for item in children:
        item_kind = type(item)
        if item_kind in _LEAVES:
            continue
        if item_kind is float:
            if item - item != 0.0:
                return False
        elif not _plain(item, depth + 1):
            return False
    return True


def dumps_json(value: Any) -> bytes:
    """`dumps` written by ``json`` alone (its errors stand)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8", "surrogatepass"
    )


def dumps_orjson(value: Any) -> bytes | None:
    """orjson's bytes for `value` when they are what ``json`` would write (plain data), else None.

    Bytes orjson wrote hold integers within 64 bits and valid UTF-8 only, so orjson reads them back as
    ``json`` does (`loads_orjson_written`).
    """
    if _orjson is None or not _plain(value):
        return None
    try:
        out: bytes = _orjson.dumps(value)
    except _orjson.JSONEncodeError:  # a non-str key, an int beyond 64 bits, a lone surrogate
        return None
    return out


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities raise ValueError, other non-JSON values TypeError (as json)."""
    out = dumps_orjson(value)
    return out if out is not None else dumps_json(value)


def loads(raw: bytes | str) -> Any:
    """The value of JSON bytes, as ``json.loads`` reads them (its errors: ValueError, RecursionError).

    Text (from a client that decodes replies) is read by json alone, as it always was.
    """
    if _orjson is not None and not isinstance(raw, str) and _LONG_RUN not in raw.translate(_DIGITS):
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError:  # json decides: it reads NaN literals and surrogatepass bytes
            pass
    return json.loads(raw)


def loads_orjson_written(raw: bytes) -> Any:
    """`loads` of bytes `dumps_orjson` wrote, without the scan for long integers (they hold none).

    What orjson refuses is read by ``json`` (as `loads` would, after trying orjson once). Bytes that only
    claim to be orjson's (we did not write them) and hold an integer beyond 64 bits read as a float, as
    orjson reads it: still data, never an error.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(raw)
