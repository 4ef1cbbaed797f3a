"""Which tests must share a pytest-xdist worker: the conftest hook's rule, also used by
``tests/test_suite.py`` to check that the installed pytest and xdist honour it."""

import pytest


def group_by_shared_fixtures(items) -> None:
    """One ``xdist_group`` per module for the tests that take a module-scoped fixture."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures and any(defs[-1].scope == "module"
                            for defs in fixtures.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
