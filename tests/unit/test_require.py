"""tests/require.py: a missing piece skips a test, or fails it when its DEFECTLENS_REQUIRE_* flag is set (CI)."""

from __future__ import annotations

import pytest

from tests.require import FLAGS, import_or_missing, missing


@pytest.mark.parametrize("flag", FLAGS)
def test_missing_skips_without_the_flag_and_fails_with_it(flag, monkeypatch):
    monkeypatch.delenv(f"DEFECTLENS_REQUIRE_{flag}", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no such tool"):
        missing(flag, "no such tool")
    monkeypatch.setenv(f"DEFECTLENS_REQUIRE_{flag}", "1")
    with pytest.raises(pytest.fail.Exception, match=rf"no such tool .*DEFECTLENS_REQUIRE_{flag}=1"):
        missing(flag, "no such tool")


def test_import_or_missing_returns_the_module_or_names_the_import_error(monkeypatch):
    assert import_or_missing("json", flag="SERVE", reason="x").dumps([]) == "[]"
    monkeypatch.setenv("DEFECTLENS_REQUIRE_SERVE", "1")
    with pytest.raises(pytest.fail.Exception, match=r"needs it .*no_such_module_xyz"):
        import_or_missing("no_such_module_xyz", flag="SERVE", reason="needs it")


def test_an_unknown_flag_is_a_mistake_in_the_test():
    with pytest.raises(AssertionError, match="unknown flag"):
        missing("UI", "typo")
