"""What goes into a LlamaIndex key: the shortcuts (scalars, formatters, cached field lists) change nothing."""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from llamaindex_support import CountingLLM
from llamaindex_valkey_cache import keying

pytestmark = pytest.mark.fake


def reference_describe(obj: Any) -> Any:
    code = getattr(obj, "__code__", None)
    if code is not None:
        body = hashlib.blake2b(code.co_code + repr(code.co_consts).encode(), digest_size=12).hexdigest()
        return {"function": keying.qualified(obj), "code": body}
    return keying._describe(obj)


def reference_settings(model: BaseModel) -> dict[str, Any]:
    """`settings_of` as it was written first: every field through pydantic's JSON conversion."""
    out: dict[str, Any] = {}
    for name in sorted(type(model).model_fields):
        if name in keying._IGNORED or keying._SECRET.search(name):
            continue
        value = getattr(model, name, None)
        if isinstance(value, SecretStr):
            continue
        if isinstance(value, BaseModel):
            out[name] = {"class": keying.qualified(type(value)), "settings": reference_settings(value)}
        else:
            out[name] = to_jsonable_python(value, fallback=reference_describe, serialize_unknown=False)
    return out


class Mode(enum.Enum):
    FAST = "fast"


class Inner(BaseModel):
    depth: int = 1
    token: str = "never in a key"


def formatter(text: str) -> str:
    return text.upper()


class SettingsLLM(CountingLLM):
    temperature: float = 0.5
    top_k: int = 3
    flag: bool = False
    label: str | None = None
    mode: Mode = Mode.FAST
    stops: list[str] = ["\n"]
    extra: dict[str, Any] = {"a": [1, 2.5]}
    inner: Inner = Inner()
    api_key: SecretStr = SecretStr("sk-x")
    fmt: Any = formatter
    big: int = 2**80


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"temperature": float("nan")},
        {"temperature": 1e300, "top_k": -7, "flag": True, "label": "é"},
        {"fmt": lambda text: text},
        {"fmt": len},
        {"stops": []},
    ],
)
def test_settings_are_what_pydantic_alone_gives(changes: dict[str, Any]) -> None:
    llm = SettingsLLM(**changes)
    assert repr(keying.settings_of(llm)) == repr(reference_settings(llm))
    assert "api_key" not in keying.settings_of(llm)
    assert "token" not in keying.settings_of(llm)["inner"]["settings"]


def test_a_changed_setting_or_formatter_changes_the_identity() -> None:
    llm = SettingsLLM()
    before = keying.llm_identity(llm)
    assert keying.llm_identity(llm) == before
    llm.temperature = 0.6
    changed = keying.llm_identity(llm)
    assert changed != before
    llm.fmt = lambda text: text  # same module and a lambda's name: the code tells them apart
    first = keying.llm_identity(llm)
    llm.fmt = lambda text: text + "!"
    assert keying.llm_identity(llm) != first != changed
