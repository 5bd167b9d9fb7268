"""The eleven one-line bugs of issue #34, planted one at a time: does some test fail for each?

Each bug is an exact text substitution in one file of a scratch copy of ``src/`` (the substitution
must apply exactly once, or the bug is reported as not planted: the code moved and the bug needs
rewriting). The test paths that cover the rule then run against the copy (``PYTHONPATH`` puts the
copy first, and a plugin checks that ``defectlens`` really is imported from it) with ``-x``: the first
failing test catches the bug. That test is then run once more against the unchanged source, where it
must pass, so a test that fails anyway is not counted as a catch. Writes
``benchmarks/results/planted.json``.

    make planted                                              # all eleven (about ten minutes on 2 cores)
    .venv/bin/python benchmarks/bench_planted.py --bugs tie_away_from_half auth_prefix
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "planted.json"

#: loaded by every planted run (``-p``): fails the session unless defectlens comes from the copy
PLUGIN = """
import os

import defectlens


def pytest_sessionstart(session):
    expected = os.environ["PLANTED_SRC"]
    if not os.path.realpath(defectlens.__file__).startswith(os.path.realpath(expected)):
        raise SystemExit(f"defectlens imported from {defectlens.__file__}, not the planted copy in {expected}")
"""


@dataclass(frozen=True)
class Bug:
    """One planted bug: ``old`` replaced by ``new`` in ``file`` (under src/defectlens), and the tests to run."""

    title: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


DECISION_TESTS = ("tests/unit/core", "tests/unit/evaluation", "tests/unit/workflows", "tests/unit/gui")
ROW_TESTS = (
    "tests/unit/workflows",
    "tests/unit/hardening/test_predict_output.py",
    "tests/integration/test_cli_predict.py",
)
SPEC_TESTS = ("tests/unit/core", "tests/unit/test_spec_and_cli.py", "tests/unit/hardening")

BUGS: dict[str, Bug] = {
    "decide_flipped_defect_first": Bug(
        "decide(): every decision flipped for models whose defect class is index 0",
        "core/decision.py",
        "probs[:, positive_index] >= threshold, positive_index, 1 - positive_index)",
        "probs[:, positive_index] >= threshold, 1, 0)",
        DECISION_TESTS,
    ),
    "decide_strict": Bug(
        "a part exactly at the threshold no longer counted as a defect (>= -> >)",
        "core/decision.py",
        "probs[:, positive_index] >= threshold,",
        "probs[:, positive_index] > threshold,",
        DECISION_TESTS,
    ),
    "tie_away_from_half": Bug(
        "the threshold choice breaks ties away from 0.5 instead of towards it",
        "evaluation/threshold.py",
        'return -abs(row["threshold"] - 0.5)',
        'return abs(row["threshold"] - 0.5)',
        ("tests/unit/evaluation",),
    ),
    "sweep_strict": Bug(
        "the sweep uses > where decisions use >=",
        "evaluation/threshold.py",
        "pred = p >= t",
        "pred = p > t",
        ("tests/unit/evaluation",),
    ),
    "csv_defect_probability_of_prediction": Bug(
        "the predict CSV's defect_probability filled with the predicted class's probability",
        "core/decision.py",  # since #33 the one defect probability of every surface is computed here
        "return float(probabilities[positive_class])",
        "return float(max(probabilities.values()))",
        (*ROW_TESTS, "tests/unit/core"),
    ),
    "csv_error_row_mismatch": Bug(
        "error rows with a ground truth marked MISMATCH",
        "workflows/predict.py",
        'if truth and pred.ok else ""',
        'if truth else ""',
        ROW_TESTS,
    ),
    "auth_prefix": Bug(
        "an API key compared by prefix (an empty X-API-Key header passes)",
        "serve/auth.py",
        "not hmac.compare_digest(given.encode(), api_key.encode())",
        "not api_key.startswith(given)",
        ("tests/unit/serve",),
    ),
    "spec_nonfinite_vectors": Bug(
        "NaN or inf mean/std accepted by the bundle schema",
        "core/spec.py",
        "not all(_is_number(x) for x in v)",
        "not all(isinstance(x, (int, float)) for x in v)",
        SPEC_TESTS,
    ),
    "batcher_lone_waits": Bug(
        "the batcher makes a lone request wait its full window",
        "serve/batcher.py",
        "if self._announced <= 0 or remaining <= 0:",
        "if remaining <= 0:",
        ("tests/unit/serve",),
    ),
    "auth_missing_key": Bug(
        "a missing API key let through",
        "serve/auth.py",
        "if given is None or not hmac.compare_digest(",
        "if given is not None and not hmac.compare_digest(",
        ("tests/unit/serve",),
    ),
    "spec_positive_not_a_class": Bug(
        "a positive class not among the classes accepted",
        "core/spec.py",
        "if pos is not None and pos not in names:",
        "if pos is not None and not isinstance(pos, str):",
        SPEC_TESTS,
    ),
}

FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bugs", nargs="+", choices=list(BUGS), default=list(BUGS), help="bugs to plant (default: all)")
    p.add_argument("--tests", nargs="+", help="test paths to run instead of each bug's own (a quick check)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one bug's test run may take")
    return p


def plant(bug: Bug, scratch: Path) -> Path:
    """A copy of src/ under ``scratch`` with ``bug`` planted; raises ValueError unless it applies exactly once."""
    src = scratch / "src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    path = src / "defectlens" / bug.file
    text = path.read_text(encoding="utf-8")
    if text.count(bug.old) != 1:
        raise ValueError(f"{bug.old!r} occurs {text.count(bug.old)} times in src/defectlens/{bug.file}, not once")
    path.write_text(text.replace(bug.old, bug.new), encoding="utf-8")
    return src


def pytest(tests: list[str], src: Path, scratch: Path, timeout: float, *, first_failure: bool) -> tuple[int, str]:
    """Run pytest on ``tests`` with ``src`` first on the path; (exit code, output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(scratch)]), "PLANTED_SRC": str(src)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no stale .pyc of a planted file is ever read back
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "planted_check", *tests]
    if first_failure:
        cmd.insert(4, "-x")
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return -1, out + f"\n(timed out after {timeout:g} s)"
    return done.returncode, done.stdout + done.stderr


def try_bug(name: str, bug: Bug, scratch: Path, args: argparse.Namespace) -> dict[str, Any]:
    tests = list(args.tests or bug.tests)
    entry: dict[str, Any] = {"title": bug.title, "file": f"src/defectlens/{bug.file}", "old": bug.old, "new": bug.new}
    entry["tests"] = tests
    try:
        src = plant(bug, scratch)
    except ValueError as exc:
        return {**entry, "planted": False, "caught": False, "note": str(exc)}
    start = time.monotonic()
    code, out = pytest(tests, src, scratch, args.timeout, first_failure=True)
    entry.update(planted=True, exit_code=code, seconds=round(time.monotonic() - start, 1))
    if "not the planted copy" in out:
        raise SystemExit(out[-2000:])
    failing = FAILED.findall(out)
    if code not in (0, 1) or (code == 1 and not failing):
        return {**entry, "caught": False, "note": "pytest did not run to a verdict", "output": out[-3000:]}
    if not failing:
        return {**entry, "caught": False}
    # the same test against the unchanged source: a test that fails anyway caught nothing
    clean = plant(Bug(bug.title, bug.file, bug.old, bug.old, ()), scratch)
    clean_code, clean_out = pytest(failing[:1], clean, scratch, args.timeout, first_failure=True)
    if clean_code != 0:
        return {**entry, "caught": False, "failed_unplanted_too": failing[0], "output": clean_out[-3000:]}
    return {**entry, "caught": True, "caught_by": failing[0]}


def main(args: argparse.Namespace) -> int:
    from machine import describe

    results: dict[str, Any] = {
        "command": "python benchmarks/bench_planted.py " + " ".join(sys.argv[1:]),
        "machine": describe(),
        "bugs": {},
    }
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        scratch = Path(tmp)
        (scratch / "planted_check.py").write_text(PLUGIN, encoding="utf-8")
        for name in args.bugs:
            entry = try_bug(name, BUGS[name], scratch, args)
            results["bugs"][name] = entry
            verdict = f"caught by {entry['caught_by']}" if entry["caught"] else "NOT CAUGHT"
            print(f"{name}: {verdict} ({entry.get('seconds', 0)} s)", flush=True)
    caught = [n for n, e in results["bugs"].items() if e["caught"]]
    results["caught"] = f"{len(caught)}/{len(results['bugs'])}"
    results["not_caught"] = [n for n in results["bugs"] if n not in caught]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"caught {results['caught']}; not caught: {', '.join(results['not_caught']) or 'none'}")
    return 0 if not results["not_caught"] else 1


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
