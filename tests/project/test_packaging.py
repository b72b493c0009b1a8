"""The distribution: a wheel built from the checkout carries all three packages and imports on its own."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import valkey_rag_cache

ROOT = Path(__file__).resolve().parents[2]


def test_core_public_api_is_pinned() -> None:
    assert sorted(valkey_rag_cache.__all__) == [
        "AnswerCache",
        "CacheError",
        "CacheOperations",
        "DEFAULT_TTLS",
        "DecodeError",
        "DoctorReport",
        "EntryKey",
        "Hit",
        "Invalidates",
        "InvalidationError",
        "Operations",
        "Seen",
        "Source",
        "SourceScope",
        "TTLPolicy",
        "as_sources",
        "scoped_sources",
    ]
    for name in valkey_rag_cache.__all__:
        assert getattr(valkey_rag_cache, name) is not None


def test_semantic_public_api_is_pinned() -> None:
    import valkey_rag_cache.semantic as semantic

    assert sorted(semantic.__all__) == [
        "Calibration",
        "Candidate",
        "LookalikeGuard",
        "MirrorIndex",
        "Partition",
        "SemanticCache",
        "SemanticHit",
        "SemanticIndex",
        "SemanticQuery",
        "Verifier",
        "calibrate",
        "pair_scores",
        "rates_at",
    ]
    for name in semantic.__all__:
        assert getattr(semantic, name) is not None


def test_wheel_holds_the_three_packages_and_imports_them(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            tmp_path,
            ROOT,
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("valkey_rag_cache-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for pkg in ("valkey_rag_cache", "langchain_valkey_cache", "llamaindex_valkey_cache"):
        assert f"{pkg}/__init__.py" in names
        assert f"{pkg}/py.typed" in names
    assert "valkey_rag_cache/lua/lookup.lua" in names
    assert "valkey_rag_cache/semantic/__init__.py" in names
    assert not any(n.startswith(("shared/", "tests/")) for n in names)

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, wheel], check=True
    )
    # A fresh interpreter without site processing: our packages come only from the installed wheel, their
    # dependencies from this environment.
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import valkey_rag_cache, langchain_valkey_cache, llamaindex_valkey_cache\n"
        "for m in (valkey_rag_cache, langchain_valkey_cache, llamaindex_valkey_cache):\n"
        "    assert m.__file__.startswith(sys.argv[1]), m.__file__\n"
        "from valkey_rag_cache.scripts import script; assert 'HMGET' in script('lookup').source\n"
    )
    site = sysconfig.get_paths()["purelib"]
    subprocess.run([sys.executable, "-S", "-c", code, str(target), site], check=True)


def _build_output(hook: str, out: Path, env: dict[str, str]) -> str:
    code = f"import sys; from setuptools import build_meta; build_meta.{hook}(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout + done.stderr


def test_builds_print_no_warning(tmp_path: Path) -> None:
    """`pip install .` (a wheel) and dev.py's editable install print nothing of the project's making."""
    import os

    sys.path.insert(0, str(ROOT))
    try:
        import dev
    finally:
        sys.path.remove(str(ROOT))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    wheel = _build_output("build_wheel", tmp_path / "w", env)
    editable = _build_output("build_editable", tmp_path / "e", {**env, **dev.INSTALL_ENV})
    for output in (wheel, editable):
        assert "Warning" not in output and "!!" not in output, output
    # Without dev.py's filter, setuptools prints its notice: the filter is what keeps the install quiet.
    assert "Editable installation" in _build_output("build_editable", tmp_path / "x", env)
