"""Setting the fields of a frozen slots dataclass from its own ``__init__``, at half what dataclasses pay.

A frozen dataclass's generated ``__init__`` sets each field with ``object.__setattr__``: ~1.5k instructions a
field on CPython 3.11, and a hit makes a `Hit`, a `Seen` and an `EntryKey` every time. Calling each slot's
descriptor directly sets the same slot with the same effect (the instance stays frozen: assignment still
goes through the dataclass's ``__setattr__`` and raises).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True, slots=True, init=False)
    ... class Point:
    ...     x: int
    ...     y: int
    ...     def __init__(self, x: int, y: int) -> None:
    ...         _x(self, x)
    ...         _y(self, y)
    >>> _x, _y = setters(Point)
    >>> Point(1, 2)
    Point(x=1, y=2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["setters"]


def setters(cls: type) -> tuple[Callable[[Any, Any], None], ...]:
    """Each field's slot setter, in the order of the fields; `cls` must be a slots dataclass."""
    return tuple(cls.__dict__[field.name].__set__ for field in dataclasses.fields(cls))
