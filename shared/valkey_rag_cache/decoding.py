"""Turning a stored value into the caller's type: one rule for every decoder of every adapter.

A decoder returns the value, or raises `DecodeError` for stored data it did not write (another version, a
damaged or hostile entry): a miss, removed and counted as bad, and not logged (what stored bytes say is no
reason for a log line each time; the ``bad`` counter shows it). Any other exception is a bug in the decoder:
logged once per decoder and kind of error, with its traceback (and no key or prompt), and still a miss,
removed, so that a bug never reaches the user's model call. Either way the write that follows is checked
against the lookup, as after any miss.

Example:
    >>> def decode(value: object) -> str:
    ...     if not isinstance(value, str):
    ...         raise DecodeError("a stored answer is a string")
    ...     return value.upper()
    >>> decoded(decode, "yes"), decoded(decode, 42)
    (('YES',), None)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import DecodeError

__all__ = ["decoded"]

T = TypeVar("T")

log = logging.getLogger("valkey_rag_cache")

_said: set[tuple[str, str]] = set()
_said_lock = threading.Lock()
_SAY_AT_MOST = 100  # kinds of decoder bugs logged; a process with more has bigger problems than its logs


def decoded(decode: Callable[[Any], T], value: Any) -> tuple[T] | None:
    """``(decode(value),)``, or None when the stored `value` is not one `decode` can read.

    A 1-tuple, so that a decoder may decode to None.
    """
    try:
        return (decode(value),)
    except DecodeError:
        return None
    except Exception as exc:  # a bug, not bad data: said loudly, but never raised into the model call
        _log_bug(decode, exc)
        return None


def _log_bug(decode: Callable[[Any], Any], exc: Exception) -> None:
    name = getattr(decode, "__qualname__", type(decode).__qualname__)
    kind = (f"{getattr(decode, '__module__', '')}.{name}", type(exc).__qualname__)
    with _said_lock:
        first = kind not in _said and len(_said) < _SAY_AT_MOST
        if first:
            _said.add(kind)
    if first:
        log.error(
            "valkey_rag_cache: the decoder %s raised %s, a bug (not bad data): the entry is treated as a "
            "miss and removed (said once per decoder and error)",
            kind[0],
            kind[1],
            exc_info=exc,
        )
