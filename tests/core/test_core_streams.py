"""The stream recorder every adapter uses: chunks pass through, the answer is stored only on completion."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from valkey_rag_cache.streams import arecorded, recorded

pytestmark = pytest.mark.fake


def failing(n: int) -> Iterator[str]:
    yield from (str(i) for i in range(n))
    raise RuntimeError("the model failed mid-stream")


async def achunks(items: list[str], fail: bool = False) -> AsyncIterator[str]:
    for item in items:
        yield item
    if fail:
        raise RuntimeError("the model failed mid-stream")


def test_a_stream_read_to_its_end_is_completed_once_with_every_chunk() -> None:
    done: list[list[str]] = []
    assert list(recorded(iter(["a", "b", "c"]), done.append)) == ["a", "b", "c"]
    assert done == [["a", "b", "c"]]


def test_each_chunk_is_passed_on_before_the_next_is_read() -> None:
    read: list[str] = []

    def source() -> Iterator[str]:
        for chunk in "xyz":
            read.append(chunk)
            yield chunk

    stream = recorded(source(), lambda chunks: None)
    assert next(stream) == "x" and read == ["x"]


def test_an_abandoned_stream_is_never_completed() -> None:
    done: list[list[str]] = []
    stream = recorded(iter("abc"), done.append)
    assert next(stream) == "a"
    stream.close()
    for chunk in recorded(iter("abc"), done.append):
        if chunk == "b":
            break
    assert done == []


def test_a_failing_stream_is_never_completed_and_its_error_reaches_the_reader() -> None:
    done: list[list[str]] = []
    kept: list[str] = []
    with pytest.raises(RuntimeError, match="mid-stream"):
        for _ in recorded(failing(2), done.append, kept):
            pass
    assert done == [] and kept == ["0", "1"]  # `kept` shows what came, whatever the outcome


def test_an_empty_stream_is_completed_with_no_chunks() -> None:
    done: list[list[str]] = []
    assert list(recorded(iter([]), done.append)) == []
    assert done == [[]]  # the adapter decides: an empty stream stores nothing


async def test_the_async_twin_completes_only_a_stream_read_to_its_end() -> None:
    done: list[list[str]] = []

    async def complete(chunks: list[str]) -> None:
        done.append(chunks)

    assert [c async for c in arecorded(achunks(["a", "b"]), complete)] == ["a", "b"]
    assert done == [["a", "b"]]

    stream = arecorded(achunks(["a", "b"]), complete)
    assert await stream.__anext__() == "a"
    await stream.aclose()
    with pytest.raises(RuntimeError, match="mid-stream"):
        async for _ in arecorded(achunks(["a"], fail=True), complete):
            pass
    assert done == [["a", "b"]]
