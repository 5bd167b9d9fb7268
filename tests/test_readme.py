"""The README's console blocks and Python snippets, executed (as litserve's tests/test_readme.py does).

Every ``$ defectlens ...`` line of a ```console block runs, in order, in a scratch folder holding
``parts/{good,bad}`` and ``new_parts`` made of real photos (ELPV solar cells from the elpv-dataset package,
so a clone without ``../shared`` runs it; the README's figures come from casting photos), and must exit 0;
every output line the README shows must appear in the real output, with numbers, timings and ids masked
(the tour's figures come from a larger folder). JSON lines are checked by key. Every ```python block runs
too. So the quick tour cannot drift from the code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import elpv_cells

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RUN = re.compile(r"runs/casting-\d{8}-\d{6}")

pytestmark = pytest.mark.slow

#: The files of ``new_parts``: the names the README's casting photos had (it predicts ``new__0_9014.jpeg``),
#: here holding cracked (``new__0_*``) and functional (``cast_ok_*``) cells as JPEG.
NEW_PARTS = {
    "bad": ("new__0_9014", "new__0_9248", "new__0_9334"),
    "good": ("cast_ok_0_9988", "cast_ok_0_9993", "cast_ok_0_9996"),
}


def mask(line: str) -> str:
    """A line with numbers, hex ids and spacing normalised, for comparing output of another run."""
    line = re.sub(r"\b[0-9a-f]{16,64}\b", "<id>", line)
    line = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", line)
    return " ".join(line.split())


def expected(line: str) -> str:
    """What of a README output line must match: a JSON line's key, or the masked line."""
    key = re.match(r'^\s*"([^"]+)":', line)
    return f'"{key.group(1)}":' if key else mask(line)


def console_blocks() -> list[list[tuple[str, list[str]]]]:
    """Each ```console block as [(command, [expected output lines])]."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", README, flags=re.S):
        steps: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps and line.strip() and line.strip() != "...":
                steps[-1][1].append(line)
        out.append(steps)
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    elpv_cells(root / "parts", per_class=16, names=("good", "bad"), jpeg=True)
    new = elpv_cells(root / "new", per_class=3, names=("good", "bad"), skip=16, jpeg=True)
    (root / "new_parts").mkdir()
    for label, names in NEW_PARTS.items():
        for cell, name in zip(sorted((new / label).iterdir()), names, strict=True):
            cell.rename(root / "new_parts" / f"{name}.jpeg")
    return root


def test_the_readme_has_a_tour():
    commands = [c for block in console_blocks() for c, _ in block]
    assert any(c.startswith("defectlens train --data parts") for c in commands)
    assert any(c.startswith("defectlens predict") for c in commands)
    assert re.findall(r"```python\n", README)


def test_console_blocks_run_and_print_what_the_readme_shows(workspace):
    env = {**os.environ, "COLUMNS": "80"}
    for block in console_blocks():
        for command, lines in block:
            runs = sorted(workspace.glob("runs/casting-*"))
            line = RUN.sub(runs[-1].relative_to(workspace).as_posix(), command) if runs else command
            line = line.replace("defectlens ", f"{sys.executable} -m defectlens ", 1)
            proc = subprocess.run(line, shell=True, cwd=workspace, env=env, capture_output=True, text=True,
                                  timeout=900)  # fmt: skip
            assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            got = {expected(x) for x in (proc.stdout + proc.stderr).splitlines()}
            missing = [x for x in lines if expected(x) not in got]
            assert not missing, f"{command}: README lines not in the output: {missing}"
            if proc.stdout.lstrip().startswith("{"):
                json.loads(proc.stdout)  # a JSON answer is whole JSON


def test_python_blocks_run(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    run = sorted(workspace.glob("runs/casting-*"))[-1].relative_to(workspace).as_posix()
    for code in re.findall(r"```python\n(.*?)```", README, flags=re.S):
        exec(compile(RUN.sub(run, code), "README.md", "exec"), {})
