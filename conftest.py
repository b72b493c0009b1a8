"""Root pytest hooks: shared by the tests and the packages' docstring examples."""

from __future__ import annotations

import doctest

import pytest
from _pytest.doctest import DoctestItem


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A docstring whose every example is +SKIP shows an API that needs a model or a server of the reader's:
    # it is documentation, not a test, so it is left out rather than reported as a skipped test.
    def documentation_only(item: pytest.Item) -> bool:
        if not isinstance(item, DoctestItem) or item.dtest is None:
            return False
        examples = item.dtest.examples
        return bool(examples) and all(ex.options.get(doctest.SKIP) for ex in examples)

    kept = [item for item in items if not documentation_only(item)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if documentation_only(item)])
        items[:] = kept
