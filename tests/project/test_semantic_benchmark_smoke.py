"""The semantic benchmark, at smoke size: every part runs end to end and reports its figures.

Figures are not asserted (they belong to `python3 dev.py bench --semantic`), only that each part ran and
reported what docs/benchmarks.md shows, and that the freshness run served no stale semantic answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.standalone


def test_the_semantic_benchmark_runs_and_reports_every_part(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, ROOT / "benchmarks" / "semantic.py", "--quick", "--out", tmp_path],
        check=True,
        cwd=ROOT,
        timeout=600,
        capture_output=True,
    )
    page = (tmp_path / "semantic.md").read_text()
    for heading in ("### Quality on the fow-cache pairs", "### Speed and memory", "### Freshness"):
        assert heading in page
    res = json.loads((tmp_path / "semantic-results.json").read_text())
    assert res["quality"]["pairs"] == 600
    assert [r["budget"] for r in res["quality"]["guard"]["seed0"]] == [0.01, 0.05, 0.11]
    assert [r["entries"] for r in res["speed"]] == [1_000, 5_000]
    assert res["freshness"]["semantic"]["stale"] == 0 and res["freshness"]["exact"]["stale"] == 0
    assert (tmp_path / "semantic.png").stat().st_size > 0
