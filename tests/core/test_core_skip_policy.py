"""The suite's skip policy (tests/conftest.py): under CI=true a skip fails the run unless
its reason is a missing GPU; without CI a skip stays a skip.

Each test runs a tiny inner pytest session with the suite's own conftest.py copied in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

INNER = """
import pytest

def test_passes():
    pass

def test_needs_data():
    pytest.skip("data not found: /nowhere/training.json")

@pytest.mark.skipif(True, reason="lmp not on PATH")
def test_needs_a_tool():
    pass

def test_needs_a_gpu():
    pytest.skip("no CUDA GPU on this machine")
"""

COLLECT_SKIP = """
import pytest

pytest.importorskip("scalebridge_no_such_module")

def test_never_collected():
    pass
"""


@pytest.fixture
def inner(pytester):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_inner=INNER)
    return pytester


def test_ci_turns_skips_into_failures_except_gpu(inner, monkeypatch):
    monkeypatch.setenv("CI", "true")
    res = inner.runpytest("-rA", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, skipped=1, errors=1, failed=1)
    # the call-phase skip fails, the skipif (setup phase) errors; both quote the reason
    out = res.stdout.str()
    assert "CI=true: a skip fails the run" in out
    assert "data not found: /nowhere/training.json" in out
    assert "lmp not on PATH" in out
    assert res.ret == pytest.ExitCode.TESTS_FAILED


def test_without_ci_a_skip_is_a_skip(inner, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    res = inner.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, skipped=3)
    assert res.ret == pytest.ExitCode.OK


def test_ci_fails_a_module_skipped_at_collection(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_collect=COLLECT_SKIP)
    monkeypatch.setenv("CI", "true")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    assert "scalebridge_no_such_module" in res.stdout.str()
    monkeypatch.setenv("CI", "false")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(skipped=1)
