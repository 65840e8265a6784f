"""The fault suite's own plugin (tests/support/faults.py): its table, and that a harmful count fails a run.

Each case runs pytest in a subprocess on a small test file that uses the plugin the way the suite does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.faults

CASES = '''
def test_counts_but_does_not_check(faults):
    faults.case()
    faults.record("orphans", {orphans}, "job 7 still queued")

def test_clean(faults):
    faults.case()
    faults.record("secrets found", 0)
    faults.check()
'''


def run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_case.py").write_text(body)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "support.faults", "-p", "no:cacheprovider",
            "--rootdir", str(tmp_path), str(tmp_path / "test_case.py")]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(TESTS)})


def test_a_harmful_count_fails_the_run_even_when_every_test_passes(tmp_path: Path) -> None:
    result = run(tmp_path, CASES.format(orphans=2))
    assert "2 passed" in result.stdout, result.stdout
    assert result.returncode == 1, result.stdout
    table = result.stdout[result.stdout.index("fault and security suite"):]
    assert "cases run            2" in table and "orphans              2" in table, table
    assert "job 7 still queued" in table and "FAILED: 2 harmful count(s) above zero" in table, table
    assert result.stdout.count("fault and security suite") == 1


def test_zero_counts_pass_and_check_names_the_case(tmp_path: Path) -> None:
    assert run(tmp_path, CASES.format(orphans=0)).returncode == 0
    result = run(tmp_path, CASES.replace('"job 7 still queued")', '"job 7 still queued")\n    faults.check()')
                 .format(orphans=1))
    assert result.returncode == 1
    assert "test_counts_but_does_not_check: orphans = 1" in result.stdout and "job 7" in result.stdout


def test_an_unknown_kind_is_an_error(tmp_path: Path) -> None:
    result = run(tmp_path, "def test_typo(faults):\n    faults.record('orphan', 1)\n")
    assert result.returncode == 1 and "unknown fault count 'orphan'" in result.stdout, result.stdout
