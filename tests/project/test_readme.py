"""Every code sample in the README runs, the Quick start is the two documented commands, and the ACL user the
README recommends can run the whole cache.

Each ```python block runs on its own (fresh globals), twice, against one real Valkey all blocks share, given
by ``VALKEY_URL`` (a block preceded by ``<!-- no-test -->`` would be skipped; there are none).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import valkey

from servers import Server, start_standalone

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"(?P<skip><!-- no-test -->\s*\n)?^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.M | re.S)


def blocks(lang: str) -> list[tuple[int, str, bool]]:
    """(line number, body, skipped) of every fenced block in `lang`."""
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start("body")) + 1, m.group("body"), bool(m.group("skip")))
        for m in FENCE.finditer(text)
        if m.group("lang") == lang
    ]


PYTHON = [b for b in blocks("python") if not b[2]]


@pytest.fixture
def server() -> Iterator[Server]:
    srv = start_standalone(maxmemory="64mb", maxmemory_policy="volatile-lru")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shared_server() -> Iterator[Server]:
    srv = start_standalone(maxmemory="64mb", maxmemory_policy="volatile-lru")
    yield srv
    srv.stop()


def test_readme_has_runnable_samples() -> None:
    assert len(PYTHON) >= 8
    assert not [line for line, _, skipped in blocks("python") if skipped]


@pytest.fixture
def frameworks_restored() -> Iterator[None]:
    """Blocks set LangChain's global cache, LlamaIndex's Settings and observers; put them back afterwards."""
    from langchain_core.globals import get_llm_cache, set_llm_cache
    from llama_index.core import Settings

    from valkey_rag_cache import telemetry

    saved = get_llm_cache(), Settings._llm, Settings._embed_model
    observers = telemetry.observers()
    yield
    set_llm_cache(saved[0])
    Settings._llm, Settings._embed_model = saved[1], saved[2]
    for observer in telemetry.observers():  # a block may install the metrics exporters
        if observer not in observers:
            telemetry.remove_observer(observer)


@pytest.mark.standalone
@pytest.mark.parametrize(
    "line,code", [(ln, body) for ln, body, _ in PYTHON], ids=[f"line{ln}" for ln, *_ in PYTHON]
)
def test_readme_python_block_runs(
    line: int, code: str, shared_server: Server, monkeypatch: pytest.MonkeyPatch, frameworks_restored: None
) -> None:
    # In this process (importing LlamaIndex anew per block would cost seconds each), with fresh globals;
    # padded so that a traceback names the README's own line numbers. Every block runs twice on a server
    # that every block shares: a sample must hold whatever the server already holds (its own earlier run,
    # the other samples' answers and counters), as it will on a reader's server.
    monkeypatch.setenv("VALKEY_URL", shared_server.url)
    compiled = compile("\n" * (line - 1) + code, str(README), "exec")
    for _ in range(2):
        exec(compiled, {"__name__": "__readme__"})


def test_quick_start_is_exactly_the_two_commands() -> None:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    fences = list(FENCE.finditer(section))
    assert fences, "no fenced block in Quick start"
    assert fences[0].group("body").strip().splitlines() == ["python3 dev.py demo", "python3 dev.py test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python3 dev.py test" in ci


@pytest.mark.standalone
def test_the_recommended_acl_user_can_run_the_cache_and_nothing_more(server: Server) -> None:
    from valkey_rag_cache import AnswerCache, Source

    setuser = next(
        line.strip()
        for _, body, _ in blocks("")
        for line in body.splitlines()
        if line.startswith("ACL SETUSER")
    )
    admin = valkey.Valkey.from_url(server.url)
    admin.execute_command(*shlex.split(setuser))
    words = shlex.split(setuser)
    user, password = words[2], next(w[1:] for w in words if w.startswith(">"))
    url = server.url.replace("valkey://", f"valkey://{user}:{password}@")

    cache = AnswerCache(url, namespace="docs:technical")
    key = cache.key("qa", "How do I rotate an API key?")
    assert cache.lookup(key) is None
    assert cache.store(key, "Settings > API keys.", [Source("kb/keys.md", "documentation")])
    assert cache.lookup(key) is not None
    assert len(cache.dependents("kb/keys.md")) == 1
    assert cache.invalidate_source("kb/keys.md") == 1
    cache.invalidate_namespace("docs")
    cache.invalidate_all()
    cache.purge()
    cache.clear()
    assert cache.stats()["process"]["errors"] == 0
    report = cache.doctor()  # no INFO for this user: it says so
    assert report.maxmemory_policy is None and any("INFO not permitted" in n for n in report.notes)

    as_user = valkey.Valkey.from_url(url)
    for forbidden in (
        ("CONFIG", "SET", "maxmemory", "1mb"),
        ("FLUSHALL",),
        ("KEYS", "*"),
        ("INFO",),
        ("SET", "other:key", "1"),
    ):
        with pytest.raises(valkey.exceptions.NoPermissionError):
            as_user.execute_command(*forbidden)
