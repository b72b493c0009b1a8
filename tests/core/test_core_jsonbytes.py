"""Entry bodies as JSON bytes: the orjson path gives exactly what the json path gives, both ways.

Every test runs twice: with orjson (a core dependency) and with the json module alone (orjson missing).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import gc
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from valkey_rag_cache import jsonbytes
from valkey_rag_cache.envelope import decode_body, encode_body

pytestmark = pytest.mark.fake

ORJSON = jsonbytes._orjson


@pytest.fixture(params=["orjson", "json"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "json":
        monkeypatch.setattr(jsonbytes, "_orjson", None)
    yield request.param


def json_loads(raw: bytes) -> Any:
    return json.loads(raw)


@pytest.fixture(autouse=True)
def no_collection_at_depth() -> Iterator[None]:
    """No garbage collection inside these tests: some parse inputs nested to the recursion limit, and a
    finalizer of another test's garbage run down there (an asyncio connection whose loop closed, which
    warns as it goes) makes pytest's unraisable-exception hook fail for lack of stack."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def outcome(fn: Any, *args: Any) -> tuple[str, str]:
    """What a call gives: its value (repr keeps int / float / -0.0 apart) or the kind of its error."""
    try:
        return "ok", repr(fn(*args))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return "err", "ValueError" if isinstance(exc, ValueError) else type(exc).__name__


def test_orjson_is_installed_so_the_fast_path_is_tested() -> None:
    assert ORJSON is not None


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


class Number(float):
    pass


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value, {"d": depth}]
    return value


ROUND_TRIPS: list[Any] = [
    {"a": [1, 2.5, None, True, False, "x"], "b": {"c": {"d": []}}},
    {"text": "é ü 漢字 😀 \u2028 \x00 \x1f \\ \" '", "n": -0.0},
    {"big": 12345678901234567890123456789, "neg": -(2**63) - 1, "edge": 2**64 - 1, "small": -(2**63)},
    {"lone": "\ud800 and \udfff", "pair": "\ud83d\ude00"},
    {"floats": [0.1, 1e300, 5e-324, 1.7976931348623157e308, -2.5e-10, 1e16, 123456789.123456789]},
    {"tuple": (1, "two", (3,))},
    {"deep": nested(30)},
    {"deeper than the fast path goes": nested(70)},
    {"digits in text": "call_12345678901234567890", "id": 1234567890123456789},
    "a plain string",
    42,
    None,
]


@pytest.mark.parametrize("value", ROUND_TRIPS)
def test_values_round_trip_exactly(path: str, value: Any) -> None:
    raw = jsonbytes.dumps(value)
    expected = json.loads(json.dumps(value, ensure_ascii=False))
    assert repr(jsonbytes.loads(raw)) == repr(expected)
    assert repr(json_loads(raw)) == repr(expected)  # what is written is plain JSON, whoever reads it


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    "where",
    [lambda x: x, lambda x: [1, x], lambda x: {"a": {"b": [x]}}, lambda x: (x,), lambda x: {"v": [[x]]}],
)
def test_non_finite_floats_are_refused_as_by_json(path: str, bad: float, where: Any) -> None:
    with pytest.raises(ValueError):
        jsonbytes.dumps(where(bad))
    assert encode_body_refuses(where(bad)) is ValueError


def encode_body_refuses(value: Any) -> type[Exception] | None:
    try:
        encode_body(value, ("s",), None, 1.0)
    except (TypeError, ValueError) as exc:
        return ValueError if isinstance(exc, ValueError) else TypeError
    return None


@pytest.mark.parametrize(
    "value",
    [
        uuid.UUID(int=7),
        Colour.RED,
        Point(1),
        datetime.datetime(2026, 1, 1),
        datetime.date(2026, 1, 1),
        {1, 2},
        b"bytes",
        object(),
    ],
    ids=["uuid", "enum", "dataclass", "datetime", "date", "set", "bytes", "object"],
)
def test_what_json_refuses_is_refused_on_both_paths(path: str, value: Any) -> None:
    # orjson alone would write the first five; json refuses them all, and so must the fast path.
    with pytest.raises(TypeError):
        jsonbytes.dumps({"v": [value]})


@pytest.mark.parametrize(
    "value",
    [{1: "int key"}, {None: "x", 2.5: "y"}, [Number(1.5)], {"k": Number(2.0)}],
    ids=["int-key", "none-float-keys", "float-subclass", "float-subclass-in-dict"],
)
def test_what_json_accepts_differently_is_written_as_json_writes_it(path: str, value: Any) -> None:
    assert json.loads(jsonbytes.dumps(value)) == json.loads(json.dumps(value))


def test_a_cycle_is_refused_as_by_json(path: str) -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError):
        jsonbytes.dumps({"v": cycle})


CRAFTED = [
    b'{"a":1,"a":2}',
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\\ud83d\\ude00"',
    b"123456789012345678901234567890",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"[1, 12345678901234567890123]",
    b"1e400",
    b"-1e400",
    b"-0",
    b"-0.0",
    b'"\x01"',
    b"NaN",
    b"[Infinity, -Infinity]",
    b"[1,]",
    b"\xef\xbb\xbf{}",
    b" {} ",
    b"1.7976931348623157e309",
    b"2.4e-324",
    b'"\xed\xa0\x80"',
    b'"\xc0\x80"',
    b'"\xf4\x90\x80\x80"',
    b"[" * 2000 + b"]" * 2000,
    b'{"\\u0000":1}',
    b"",
    b"nul",
    b'{"f":1,"v":"x"} trailing',
]


@pytest.mark.parametrize("raw", CRAFTED)
def test_decoding_gives_what_json_gives(path: str, raw: bytes) -> None:
    assert outcome(jsonbytes.loads, raw) == outcome(json_loads, raw)
    text = raw.decode("utf-8", "surrogateescape")  # what a client that decodes replies hands over
    assert outcome(jsonbytes.loads, text) == outcome(json.loads, text)


def test_decoding_mutated_bodies_gives_what_json_gives() -> None:
    """Random damage to real bodies: wherever orjson reads one, it reads what json reads."""
    assert ORJSON is not None
    rng = random.Random(11)
    bodies = [encode_body(v, ("kb/a.md",), "documentation", 1733.25) for v in ROUND_TRIPS]
    alphabet = b'0123456789-+.eE"\\{}[],: \xff\xed\xa0ntrufals'
    for _ in range(4000):
        raw = bytearray(rng.choice(bodies))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(raw))
            action = rng.random()
            if action < 0.4:
                raw[at] = rng.choice(alphabet)
            elif action < 0.7:
                raw[at:at] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 25)))
            else:
                del raw[at : at + rng.randint(1, 5)]
        data = bytes(raw)
        assert outcome(jsonbytes.loads, data) == outcome(json_loads, data), data


@pytest.mark.parametrize("value", ROUND_TRIPS)
def test_an_entry_body_round_trips_on_both_paths(path: str, value: Any) -> None:
    hit = decode_body(encode_body(value, ("kb/a.md", "kb/é.md"), "documentation", 1733.25))
    assert hit is not None
    assert repr(hit.value) == repr(json.loads(json.dumps(value, ensure_ascii=False)))
    assert (hit.sources, hit.content_type, hit.created_at) == (
        ("kb/a.md", "kb/é.md"),
        "documentation",
        1733.25,
    )


def test_bodies_of_either_path_read_on_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = [encode_body(v, ("s",), None, 2.0) for v in ROUND_TRIPS]
    monkeypatch.setattr(jsonbytes, "_orjson", None)
    slow = [encode_body(v, ("s",), None, 2.0) for v in ROUND_TRIPS]
    assert [repr(decode_body(b)) for b in fast] == [repr(decode_body(b)) for b in slow]
    monkeypatch.setattr(jsonbytes, "_orjson", ORJSON)
    assert [repr(decode_body(b)) for b in slow] == [repr(decode_body(b)) for b in fast]


def test_a_body_orjson_wrote_is_marked_and_read_back_by_orjson_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from valkey_rag_cache.envelope import ORJSON_HEAD

    bodies = [encode_body(v, ("kb/a.md",), "documentation", 1733.25) for v in ROUND_TRIPS]
    marked = [b for b in bodies if b.startswith(ORJSON_HEAD)]
    unmarked = [b for b in bodies if not b.startswith(ORJSON_HEAD)]
    assert marked and unmarked  # big integers, lone surrogates... are json's to write, and carry no mark
    assert all(b'"o"' not in b[:20] for b in unmarked)
    expected = [repr(json.loads(b)["v"]) for b in bodies]
    # Marked bodies never reach the scanning reader: what orjson reads of them is what json reads.
    scanned: list[bytes] = []
    real_loads = jsonbytes.loads
    monkeypatch.setattr(jsonbytes, "loads", lambda raw: scanned.append(raw) or real_loads(raw))
    hits = [decode_body(b) for b in bodies]
    assert [repr(h.value) for h in hits if h is not None] == expected
    assert scanned == unmarked


def test_a_body_that_only_claims_the_mark_is_data_or_a_miss_never_an_error() -> None:
    from valkey_rag_cache.envelope import ORJSON_HEAD

    def body(v: bytes) -> bytes:
        return ORJSON_HEAD + b'"ct":null,"at":1,"src":[],"v":' + v + b"}"

    hit = decode_body(body(b"123456789012345678901234567890"))  # beyond 64 bits: orjson makes it a float
    assert hit is not None and hit.value == 1.2345678901234568e29
    hit = decode_body(body(b"NaN"))  # orjson refuses it: json reads it, as for any body
    assert hit is not None and hit.value != hit.value
    assert decode_body(body(b"[1,")) is None
    assert decode_body(ORJSON_HEAD + b"\xff}") is None
    rng = random.Random(12)
    good = encode_body({"text": "1234567890" * 3, "n": [1, 2.5]}, ("s",), None, 2.0)
    assert good.startswith(ORJSON_HEAD)
    for _ in range(2000):
        raw = bytearray(good)
        at = rng.randrange(len(ORJSON_HEAD), len(raw))
        raw[at:at] = bytes(rng.choice(b'0123456789"\\{}[],:\xff') for _ in range(rng.randint(1, 25)))
        decode_body(bytes(raw))  # data or None
