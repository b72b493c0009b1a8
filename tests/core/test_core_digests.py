"""Digests of length-prefixed text fields: unambiguous by construction, the cached state changing nothing."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from valkey_rag_cache.digests import _PERSON, encode_fields, fields_digest, json_field
from valkey_rag_cache.keys import digest

pytestmark = pytest.mark.fake


def parse_fields(data: bytes) -> tuple[str, ...]:
    """Read `encode_fields` bytes back: possible in exactly one way, which is what makes them unambiguous."""
    out, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 8], "big")
        text = data[at + 8 : at + 8 + size]
        assert len(text) == size, "a frame runs past the end"
        out.append(text.decode("utf-8", "surrogatepass"))
        at += 8 + size
    return tuple(out)


# Pairs of inputs whose plain concatenation (or naive joining) would be the same.
SHIFTS = [
    (("lc", "ab", "c"), ("lc", "a", "bc")),
    (("lc", "", "xy"), ("lc", "xy", "")),
    (("lc", "x", "y"), ("lcx", "", "y")),
    (("lc", "a"), ("lc", "a", "")),
    (("lc", "a", ""), ("lc", "a", "", "")),
    (("lc", 'm"}---', "p"), ("lc", "m", '"}---p')),
    (("lc", "a\x00\x00\x00\x00\x00\x00\x00\x01b", "c"), ("lc", "a", "b\x00\x00\x00\x00\x00\x00\x00\x01c")),
    (("lc", "\ud83d\ude00", "x"), ("lc", "😀", "x")),  # a surrogate pair is not the character it spells
]


@pytest.mark.parametrize(("one", "other"), SHIFTS)
def test_shifted_fields_never_share_an_encoding_or_a_digest(
    one: tuple[str, ...], other: tuple[str, ...]
) -> None:
    assert encode_fields(*one) != encode_fields(*other)
    assert parse_fields(encode_fields(*one)) == one
    assert parse_fields(encode_fields(*other)) == other
    assert fields_digest(*one) != fields_digest(*other)  # type: ignore[arg-type]


def random_text(rng: random.Random) -> str:
    pool = "ab-:\"'{}[]\x00\x01\n é漢😀\ud800\udfff0123456789"
    return "".join(rng.choice(pool) for _ in range(rng.choice([0, 1, 2, 3, 8, 40])))


def test_random_field_tuples_read_back_exactly() -> None:
    rng = random.Random(5)
    seen: dict[bytes, tuple[str, ...]] = {}
    for _ in range(5000):
        fields = tuple(random_text(rng) for _ in range(rng.randint(2, 4)))
        data = encode_fields(*fields)
        assert parse_fields(data) == fields
        assert seen.setdefault(data, fields) == fields


def test_the_digest_is_blake2b_of_the_encoding_whatever_was_cached() -> None:
    def plain(*fields: str) -> str:
        raw = hashlib.blake2b(encode_fields(*fields), digest_size=16, person=_PERSON).digest()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    llm = "model settings " * 50
    first = fields_digest("lc", llm, "prompt one")
    second = fields_digest("lc", llm, "prompt two")  # continues the same cached state
    assert first == fields_digest("lc", llm, "prompt one") == plain("lc", llm, "prompt one")
    assert second == plain("lc", llm, "prompt two") != first
    assert fields_digest("lc", llm) == plain("lc", llm)
    assert fields_digest("lc", llm, "a", "b") == plain("lc", llm, "a", "b")
    assert len(first) == 22  # 16 bytes in URL-safe base64, like every digest in a key


def test_these_digests_are_apart_from_the_json_ones() -> None:
    # The personalization: the same bytes hashed by `keys.digest` give another digest.
    data = encode_fields("lc", "llm", "prompt")
    assert fields_digest("lc", "llm", "prompt") != digest(data)


def test_non_strings_are_refused() -> None:
    with pytest.raises(TypeError):
        fields_digest("lc", "llm", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fields_digest("lc", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "one,other",
    [
        ([None, float("nan")], [None, None]),  # orjson writes NaN as null: a text with null is checked
        ({"x": "null", "y": float("inf")}, {"x": "null", "y": None}),
        ([float("inf")], [float("-inf")]),
        ([1], [1.0]),
        ([1], [True]),
        ([2**70], [float(2**70)]),
        ({"a": 1}, {"a": "1"}),
    ],
)
def test_json_fields_of_different_data_differ(one: object, other: object) -> None:
    assert json_field(one) != json_field(other)


def test_json_fields_sort_keys_and_match_json_where_both_write() -> None:
    import json

    value = {"b": [1, 2.5, None, "é"], "a": {"d": True, "c": "null"}}
    assert json_field(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert json_field({"b": 1, "a": 2}) == json_field({"a": 2, "b": 1})


def test_key_base64_is_urlsafe_base64_without_padding_at_every_length() -> None:
    from valkey_rag_cache.keys import _b64

    rng = random.Random(7)
    for size in range(40):
        for _ in range(20):
            raw = rng.randbytes(size)
            assert _b64(raw) == base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert _b64(b"\xfb\xff\xbf") == "-_-_"  # the two characters that differ from plain base64
    assert digest(b"x", size=12) == _b64(hashlib.blake2b(b"x", digest_size=12).digest())
