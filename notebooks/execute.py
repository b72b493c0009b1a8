#!/usr/bin/env python3
"""Re-execute notebooks in place so their committed outputs are current.

Usage: ``python notebooks/execute.py [notebook.ipynb ...]`` (default: every notebook here). Offline, on the
embedded Valkey unless ``VALKEY_URL`` is set. The test suite re-executes them too, without writing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path, timeout: int = 180) -> nbformat.NotebookNode:
    """Run every cell of the notebook at `path` (working directory: its folder); raise on the first error."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return nb


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        print(f"executing {path.name} ...", flush=True)
        nbformat.write(execute(path), path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
