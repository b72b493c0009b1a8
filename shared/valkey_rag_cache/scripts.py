"""The server-side Lua scripts, loaded once from the package with the shared helpers they use prepended.

`common.lua` holds the helpers, one paragraph each (a comment, then the definition, then a blank line).
A script carries the paragraphs it names, and those they name, in their order in the file: Valkey runs a
script's whole text on every call, so every helper it carries is a closure made anew each time (the full
file costs a write ~3% of its instructions), and each loaded script keeps its own copy alive in the server.

Example:
    >>> "local function clock_get" in script("register").source
    True
    >>> "local function invalidate_group" in script("register").source
    False
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources

__all__ = ["Script", "helpers", "script"]

_DEFINES = re.compile(r"^local (?:function )?([A-Za-z_]\w*)", re.M)


@dataclass(frozen=True)
class Script:
    name: str
    source: str

    @cached_property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


@cache
def helpers() -> tuple[tuple[frozenset[str], str], ...]:
    """common.lua's paragraphs: the names each defines at top level, and its text."""
    text = resources.files(__package__).joinpath("lua", "common.lua").read_text()
    return tuple((frozenset(_DEFINES.findall(p)), p) for p in re.split(r"\n\s*\n", text) if p.strip())


def _names(text: str) -> set[str]:
    # Every word of the code counts (a word in a string names no helper, and only makes a script longer).
    return set(re.findall(r"[A-Za-z_]\w*", re.sub(r"--[^\n]*", "", text)))


def _prelude(body: str) -> str:
    paragraphs = helpers()
    wanted = _names(body)
    chosen: set[int] = set()
    grew = True
    while grew:  # what the chosen helpers name in turn
        grew = False
        for i, (defines, text) in enumerate(paragraphs):
            if i not in chosen and defines & wanted:
                chosen.add(i)
                wanted |= _names(text)
                grew = True
    return "\n\n".join(text for i, (_, text) in enumerate(paragraphs) if i in chosen)


@cache
def script(name: str) -> Script:
    body = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()
    return Script(name, _prelude(body) + "\n\n" + body)
