"""The server-side Lua scripts, loaded once from the package with the shared helpers prepended."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources

__all__ = ["Script", "script"]


@dataclass(frozen=True)
class Script:
    name: str
    source: str

    @cached_property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


@cache
def script(name: str) -> Script:
    lua = resources.files(__package__).joinpath("lua")
    common = lua.joinpath("common.lua").read_text()
    return Script(name, common + "\n" + lua.joinpath(f"{name}.lua").read_text())
