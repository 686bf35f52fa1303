"""Under CI (CI=1, set by .ci/run) a skipped test fails: a missing data set or dependency
must turn CI red, not pass as "skipped"."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")
REPO = CONFTEST.parents[1]  # the copied conftest imports tests.support from the checkout

SUITE = '''
import pytest

def test_needs_data():
    pytest.skip("data not found")

@pytest.mark.ci_may_skip
def test_needs_a_gpu():
    pytest.skip("no GPU")

def test_runs():
    assert True
'''


def run_suite(directory: Path, ci: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci else {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
                          capture_output=True, text=True, env=env, cwd=directory, timeout=120)


def test_a_skip_fails_under_ci_and_only_there(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SUITE)

    under_ci = run_suite(tmp_path, "1")
    assert under_ci.returncode == 1, under_ci.stdout
    assert "test_needs_data skipped under CI=1" in under_ci.stdout
    assert "1 failed, 1 passed, 1 skipped" in under_ci.stdout  # the marked skip stays a skip

    elsewhere = run_suite(tmp_path, "")
    assert elsewhere.returncode == 0, elsewhere.stdout
    assert "1 passed, 2 skipped" in elsewhere.stdout
