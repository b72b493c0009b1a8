"""The entry format, whole: a header the scripts write and check, then the JSON body this module writes.

A stored entry reads::

    vrc1\\n<era> <invalidations>\\n<suffix> <token>\\n ... <suffix> <token>\\n\\n<body>

The header holds the group clock's era and invalidation count when the entry was written, then every token
it depends on (``a`` the version, ``n:<ns>`` each namespace level, ``s:<digest>`` each source); a token of
the entry's own era is written as its counter alone. `write.lua` writes it (``entry_encode`` in
``common.lua``, which also holds the one reader, ``entry_header``/``entry_deps``): it needs the tokens as
they are inside the atomic write. `entry` and `header` here are its description in Python, for tests and
tools; ``tests/core/test_core_layout.py`` checks both sides agree.

The body: format version, content type, creation time, sources and the adapter's value, as JSON (with
``"o": 1`` after the version when orjson wrote it: `jsonbytes` then reads it back with orjson alone). Anything
unreadable decodes to None, which the cache turns into a counted miss. JSON is data only: nothing in stored
bytes can name a class, run code or read the environment.

Example:
    >>> stored = entry("e1", 0, [("a", "e1.3")], encode_body("hi", ("kb.md",), None, 1.0))
    >>> stored[:16]
    b'vrc1\\ne1 0\\na 3\\n\\n{'
    >>> decode_body(body_of(stored)).value, header(stored).deps
    ('hi', (('a', 'e1.3'),))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import jsonbytes, slots

__all__ = ["FORMAT", "Header", "Hit", "body_of", "decode_body", "encode_body", "entry", "header"]

FORMAT = 1
MAGIC = b"vrc1\n"
JSON = Any
V = TypeVar("V")


@dataclass(frozen=True, slots=True, init=False)
class Hit(Generic[V]):
    """A cached value (stored JSON, or what the caller's decoder made of it) and what it was built from."""

    value: V
    sources: tuple[str, ...]
    content_type: str | None
    created_at: float

    def __init__(
        self, value: V, sources: tuple[str, ...], content_type: str | None, created_at: float
    ) -> None:
        _hit_value(self, value)  # one per lookup: see `slots`
        _hit_sources(self, sources)
        _hit_content_type(self, content_type)
        _hit_created_at(self, created_at)


_hit_value, _hit_sources, _hit_content_type, _hit_created_at = slots.setters(Hit)


@dataclass(frozen=True, slots=True)
class Header:
    """An entry's header: the clock when it was written, and the tokens (suffix, "<era>.<n>") it recorded."""

    era: str
    invalidations: int
    deps: tuple[tuple[str, str], ...]


def entry(era: str, invalidations: int, deps: list[tuple[str, str]], body: bytes) -> bytes:
    """A stored entry as `write.lua` writes it (``entry_encode``)."""
    lines = ["vrc1", f"{era} {invalidations}"]
    for suffix, token in deps:
        tok_era, _, n = token.partition(".")
        lines.append(f"{suffix} {n if tok_era == era else token}")
    return "\n".join(lines).encode() + b"\n\n" + body


def header(stored: bytes) -> Header | None:
    """A stored entry's header as the scripts read it (``entry_header``, ``entry_deps``); None: not ours."""
    if not stored.startswith(MAGIC) or b"\n\n" not in stored:
        return None
    head = stored[len(MAGIC) : stored.index(b"\n\n")].decode("utf-8", "replace").split("\n")
    era, _, inv = head[0].partition(" ")
    if not era.isalnum() or not inv.isdigit():
        return None
    deps = []
    for line in head[1:]:
        suffix, sp, tok = line.partition(" ")
        if not sp:
            return None
        deps.append((suffix, tok if "." in tok else f"{era}.{tok}"))
    if not any(suffix == "a" for suffix, _ in deps):
        return None
    return Header(era, int(inv), tuple(deps))


def body_of(stored: Any) -> Any:
    """The body of an entry lookup.lua returned as a hit (bytes, or str from a client decoding replies)."""
    sep = b"\n\n" if isinstance(stored, bytes) else "\n\n"
    return stored[stored.find(sep) + 2 :]


def encode_body(value: JSON, sources: tuple[str, ...], content_type: str | None, created_at: float) -> bytes:
    # Compact UTF-8 JSON; NaN and infinities are refused (ValueError), other non-JSON values (TypeError).
    # A body orjson writes says so first ("o"), so a hit reads it with orjson alone (`decode_body`); readers
    # that predate the mark ignore the field.
    doc = {"f": FORMAT, "o": 1, "ct": content_type, "at": created_at, "src": list(sources), "v": value}
    fast = jsonbytes.dumps_orjson(doc)
    if fast is not None:
        return fast
    del doc["o"]
    return jsonbytes.dumps_json(doc)


# How a body `encode_body` wrote with orjson begins (orjson keeps the keys in order, with no spaces).
ORJSON_HEAD = b'{"f":%d,"o":1,' % FORMAT


def decode_body(raw: bytes) -> Hit[JSON] | None:
    try:
        if type(raw) is bytes and raw.startswith(ORJSON_HEAD):
            doc = jsonbytes.loads_orjson_written(raw)  # no scan of 1.5 KB for long integers per hit
        else:
            doc = jsonbytes.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("f") != FORMAT or "v" not in doc:
        return None
    src, ct, at = doc.get("src"), doc.get("ct"), doc.get("at")
    if type(src) is not list:
        return None
    try:
        "".join(src)  # every source id a string (the quickest test of a list's items)
    except TypeError:
        return None
    if ct is not None and not isinstance(ct, str):
        return None
    if not isinstance(at, int | float) or isinstance(at, bool):
        return None
    return Hit(doc["v"], tuple(src), ct, float(at))
