"""benchmarks/bench_planted.py and bench_mutation.py: their arguments, every planted bug applying to today's
source exactly once, and one cheap bug planted end to end (caught, and its catching test passing unplanted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


def test_arguments_default_to_every_bug_and_module():
    planted, mutation = load_benchmark("bench_planted"), load_benchmark("bench_mutation")
    assert planted.get_args_parser().parse_args([]).bugs == list(planted.BUGS) and len(planted.BUGS) == 11
    args = mutation.get_args_parser().parse_args(["--modules", "decision", "auth"])
    assert args.modules == ["decision", "auth"] and args.max_children == 1
    with pytest.raises(SystemExit):
        planted.get_args_parser().parse_args(["--bugs", "no_such_bug"])


def test_every_bug_plants_exactly_once_and_every_path_exists(tmp_path):
    """A bug whose text no longer occurs once would be reported 'not planted': the code moved under it."""
    planted = load_benchmark("bench_planted")
    for name, bug in planted.BUGS.items():
        src = planted.plant(bug, tmp_path)
        assert bug.new in (src / "defectlens" / bug.file).read_text(encoding="utf-8"), name
        assert all((ROOT / t).exists() for t in bug.tests), name
    for target in load_benchmark("bench_mutation").TARGETS.values():
        assert (ROOT / target.source).is_file() and all((ROOT / t).exists() for t in target.tests)


@pytest.mark.slow
def test_one_planted_bug_is_caught(tmp_path):
    out = tmp_path / "planted.json"
    cmd = [sys.executable, "benchmarks/bench_planted.py", "--bugs", "tie_away_from_half", "--out", str(out)]
    cmd += ["--tests", "tests/unit/evaluation/test_threshold.py"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    entry = json.loads(out.read_text())["bugs"]["tie_away_from_half"]
    assert entry["planted"] and entry["caught"] and entry["caught_by"].startswith("tests/unit/evaluation/")
