"""Dataset statistics, sample grid and the 'defectlens data' commands."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from defectlens.cli import main
from defectlens.cli.output import stdout
from defectlens.cli.summary import print_stats
from defectlens.data.manifest import Manifest
from defectlens.data.stats import dataset_stats
from tests.unit.data.conftest import write_image


def _src(root: Path) -> Path:
    for i in range(6):
        write_image(root / "good" / f"g{i}.png", i)
        write_image(root / "scratches" / f"s{i}.png", 100 + i, size=32)
    write_image(root / "good" / "g_copy.png", 0)  # byte-identical to g0.png
    (root / "good" / "empty.png").write_bytes(b"")
    return root


def test_cli_import_split_stats(tmp_path: Path, capsys) -> None:
    src, out = _src(tmp_path / "src"), tmp_path / "ds"
    rc = main(["data", "import", str(src), "--format", "folder", "--out", str(out), "--map", "scratches=defect"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "good/empty.png" in text and "empty file" in text
    m = Manifest.read(out)
    assert m.classes == ["defect", "good"] and m.info["positive_class"] == "defect"
    assert main(["data", "split", str(out), "--val", "0.2", "--test", "0.2", "--seed", "1"]) == 0
    assert "duplicate groups kept on one side: 1" in capsys.readouterr().out
    m = Manifest.read(out)
    assert {r.split for r in m.records} == {"train", "val", "test"}
    assert main(["data", "stats", str(out), "--json", "--grid", str(tmp_path / "grid.png")]) == 0
    stats = json.loads(capsys.readouterr().out.split("\nwrote ")[0])
    assert stats["images"] == 13 and stats["per_class"] == {"defect": 6, "good": 7}
    assert stats["exact_duplicate_sets"] == 1 and stats["duplicate_groups"] == 1 and stats["cross_split_groups"] == 0
    assert stats["sizes"] == {"24x24": 7, "32x32": 6} and len(stats["skipped"]) == 1
    assert Image.open(tmp_path / "grid.png").size == (8 * 96, 2 * (96 + 14))  # 8 per class, captioned
    print_stats(stdout(), dataset_stats(m))
    assert "defect (positive)" in capsys.readouterr().out


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["data", "import", str(tmp_path / "missing"), "--format", "folder", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("defectlens: error:") and "missing" in err[0]
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "not a defectlens dataset" in capsys.readouterr().err
    rc = main(["data", "import", str(tmp_path), "--format", "folder", "--out", str(tmp_path / "o"), "--map", "bad"])
    assert rc == 2 and "SRC=DST" in capsys.readouterr().err
