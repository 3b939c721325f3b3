"""Skip markers for tests that replay the tables shipped with the package (a source tree
without them, e.g. a partial checkout, skips those tests instead of failing)."""

import pytest

from bench.runner import DEFAULT_GRID
from problems.table_directories import SHIPPED_TABLES


def shipped(*problems: str) -> pytest.MarkDecorator:
    """Skip unless a shipped table exists for every named problem."""
    present = all(any(SHIPPED_TABLES.glob(f"{name.replace('/', '__')}__*.h5")) for name in problems)
    return pytest.mark.skipif(not present, reason="needs the shipped tables of " + ", ".join(problems))


needs_default_grid_tables = shipped(*DEFAULT_GRID)
