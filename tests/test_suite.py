"""The test suite's own machinery: what ``make test`` promises about how tests are spread."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HELPERS = Path(__file__).parent


@pytest.mark.slow  # a pytest of its own with two xdist workers: ~9 s
def test_tests_sharing_a_module_fixture_build_it_once_on_one_worker(tmp_path):
    """``make test`` runs 2 xdist workers with ``--dist loadgroup``: a module's trained model is
    built once only if its tests land on one worker. pytest 9.2 drops the group xdist 3.8 adds
    to a test's id (pytest-dev/pytest-xdist#1386), and a conftest hook that runs after xdist's
    is not seen: either way every worker trained its own copy, silently."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import sys
        import pytest
        sys.path.insert(0, {str(HELPERS)!r})
        from helpers.xdist_groups import group_by_shared_fixtures

        @pytest.hookimpl(tryfirst=True)
        def pytest_collection_modifyitems(config, items):
            group_by_shared_fixtures(items)
    """))
    (tmp_path / "test_shared.py").write_text(textwrap.dedent("""
        import os
        import time
        from pathlib import Path
        import pytest

        @pytest.fixture(scope="module")
        def trained():
            with open(Path(__file__).with_name("setups.txt"), "a") as f:
                f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")

        @pytest.mark.parametrize("i", range(6))
        def test_uses_it(trained, i):
            time.sleep(0.1)

        @pytest.mark.parametrize("i", range(6))
        def test_alone(i):
            time.sleep(0.1)
    """))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-n", "2", "--dist", "loadgroup", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    setups = (tmp_path / "setups.txt").read_text().split()
    assert len(setups) == 1, f"the module fixture was built on workers {setups}"
