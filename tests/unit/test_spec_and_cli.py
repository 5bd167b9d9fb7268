"""ModelSpec serialisation, the CLI entry point, and the cheap top-level import."""

from __future__ import annotations

import subprocess
import sys

from defectlens.cli import main
from defectlens.core.spec import ModelSpec


def test_spec_json_round_trip():
    spec = ModelSpec(arch="efficientnet_lite0", in_channels=1, mean=(0.5,), std=(0.5,), class_names=("ok", "defect"))
    spec = spec.replace(positive_class="defect", threshold=0.31, temperature=1.7)
    back = ModelSpec.from_json(spec.to_json())
    assert back == spec
    assert back.positive_index == 1
    assert back.num_classes == 2


def test_import_defectlens_is_cheap():
    code = (
        "import sys, defectlens, defectlens.cli; "
        "heavy = {'torch', 'onnxruntime', 'matplotlib', 'fastapi', 'tkinter', 'sklearn'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_help_and_no_command(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
