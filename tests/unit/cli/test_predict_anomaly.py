"""``defectlens predict`` on an anomaly bundle: one image gives the anomalous class, its score and the anomaly
map's overlay; the MVTec-style test folder gives rows whose defect kind's folder is ``anomalous`` truth."""

from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

from defectlens.cli import main
from defectlens.core.anomaly import ANOMALOUS
from tests.anomaly_fixtures import scratched


def test_predict_one_scratched_part_answers_anomalous_with_its_score_and_map(anomaly_fitted, tmp_path, capsys) -> None:
    scratched(np.random.default_rng(41))[0].save(tmp_path / "part.png")
    args = ["predict", str(tmp_path / "part.png"), "--model", str(anomaly_fitted.bundle.path), "--explain",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["prediction"] == ANOMALOUS and answer["status"] == "ok"
    assert 0.5 <= answer["defect_probability"] <= 1.0
    assert answer["explain_method"] == "anomaly map (onnxruntime)"
    with Image.open(answer["overlay"]) as overlay:
        assert overlay.size == (96, 96)


def test_predict_the_test_folder_counts_the_defect_kind_as_anomalous(anomaly_fitted, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["predict", str(anomaly_fitted.source / "test"), "--model", str(anomaly_fitted.bundle.path),
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = " ".join(capsys.readouterr().out.split())
    rows = list(csv.DictReader((out / "predictions.csv").open(encoding="utf-8")))
    assert len(rows) == 16 and {r["status"] for r in rows} == {"ok"}
    truth = {r["file"].split("/")[-2]: r["truth"] for r in rows}
    assert truth == {"good": "good", "scratch": ANOMALOUS}
    right = [r for r in rows if r["match"] == "MATCH"]
    assert len(right) >= 12
    assert all(float(r["defect_probability"]) >= 0.5 for r in rows if r["prediction"] == ANOMALOUS)
    assert "on 16 labelled images" in printed
