#!/usr/bin/env python3
"""Set up and run the project with nothing but Python: `python3 dev.py demo`, `test`, `lint`, `bench` or
`notebooks`.

Each command creates `.venv` on first use and installs the project with the extras it needs into it,
again only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
# setuptools tells every editable install of a package-dir mapping to beware of same-named folders in the
# working directory (there are none: the core lives in shared/); that notice, and only it, is silenced.
INSTALL_ENV = {"PYTHONWARNINGS": "ignore:Editable installation"}


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 the user has
        sys.exit(f"valkey-rag-cache needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras}"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    print(f"installing valkey-rag-cache[{extras}] into {VENV} ...", flush=True)
    subprocess.run([PY, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    env = {**os.environ, **INSTALL_ENV}
    subprocess.run([PY, "-m", "pip", "install", "-q", "-e", f"{ROOT}[{extras}]"], check=True, env=env)
    stamp.write_text(want)


# What CI runs before the tests: lint, format check, and the type checker over the three packages.
LINT = (
    ["-m", "ruff", "check", "."],
    ["-m", "ruff", "format", "--check", "."],
    ["-m", "mypy"],  # files and strictness: [tool.mypy] in pyproject.toml
)


def lint() -> int:
    failed = 0
    for args in LINT:
        print("$", " ".join(["python", *args]), flush=True)
        failed |= subprocess.call([PY, *args], cwd=ROOT) != 0
    return int(failed)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "lint", "bench", "notebooks"):
        print(
            "usage: python3 dev.py demo | test [pytest args] | lint | bench [--semantic] [harness args]"
            " | notebooks [args]"
        )
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "demo":
        ensure_venv("demo")
        return subprocess.call([PY, ROOT / "demo.py", *rest], cwd=ROOT)
    if cmd == "notebooks":
        # JupyterLab on the notebooks folder (each notebook starts its own embedded Valkey).
        ensure_venv("notebooks")
        return subprocess.call([PY, "-m", "jupyterlab", *rest], cwd=ROOT / "notebooks")
    if cmd == "bench":
        ensure_venv("bench")
        return subprocess.call([PY, ROOT / "benchmarks" / "run.py", *rest], cwd=ROOT)
    ensure_venv("test")  # the test extra holds the linters too: one install for CI's two steps
    if cmd == "lint":
        return lint()
    return subprocess.call([PY, "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
