"""``defectlens compare`` (issue #31): a trained champion against a deliberately weaker challenger (the same
network with its defect threshold raised to 1.0, so it calls almost every part good), on ``tiny_dataset``'s test
split. Every figure the comparison reports is recounted here from the bundles' own ``predict_many`` rows, and
the p-value from SciPy's binomial test; the verdict, the exit codes, the report's list of disagreeing images and
the refusals of bad input are checked through the library and the CLI."""

from __future__ import annotations

import csv
import html
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from defectlens.cli import EXIT_KEEP_CHAMPION, EXIT_OK, EXIT_USAGE, main
from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec
from defectlens.data.manifest import Manifest, Record
from defectlens.evaluation.paired import KEEP, PROMOTE
from defectlens.inference.predictor import Predictor
from defectlens.reporting.compare import REVIEW, DisagreementRow, render
from defectlens.workflows.compare import compare_models, defect_rule
from tests.helpers import make_checkpoint, scripted_predictor


def _export(run: Path, out: Path, data: Path | None) -> Path:
    from defectlens.export import export_bundle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_bundle(run, out, data=data).path


@pytest.fixture(scope="module")
def bundles(tiny_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """(champion, challenger): a simple_cnn trained 6 epochs on ``tiny_dataset``, and the same weights with the
    defect threshold at 1.0; both exported with the data (so each carries its gate)."""
    import torch

    from defectlens.core.checkpoint import save_checkpoint
    from defectlens.models import load_checkpoint
    from defectlens.training import train
    from defectlens.training.config import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = tmp_path_factory.mktemp("compare-runs")
        config = TrainConfig(
            data=str(tiny_dataset), model="simple_cnn", pretrained=False, channels=1, input_size=32, epochs=6,
            batch_size=16, lr=3e-3, augment="light", patience=0, workers=1, evaluate=False, out=str(runs), name="c",
        )  # fmt: skip
        run = train(config).run_dir
        model, spec, payload = load_checkpoint(run / "best.pt")
        weak = tmp_path_factory.mktemp("compare-weak")
        save_checkpoint(weak / "best.pt", model, spec.replace(threshold=1.0), config=payload.get("config"))
        out = tmp_path_factory.mktemp("compare-bundles")
        return _export(run, out / "champion.dlens", tiny_dataset), _export(weak, out / "challenger.dlens", tiny_dataset)
    finally:
        torch.set_num_threads(threads)


def outcomes(bundle: Path, paths: list[Path]) -> list[str]:
    """Each image's outcome through the deployed path: its class, or ``needs review``."""
    return [p.prediction if p.status == "ok" else REVIEW for p in Predictor.load(bundle).predict_many(paths)]


@pytest.fixture(scope="module")
def expected(bundles, tiny_dataset):
    """The test split recounted from ``predict_many``: outcomes per model, labels and file names."""
    manifest = Manifest.read(tiny_dataset)
    records = manifest.split("test")
    paths = [manifest.resolve(r) for r in records]
    return {
        "files": [r.path for r in records],
        "labels": [r.label for r in records],
        "champion": outcomes(bundles[0], paths),
        "challenger": outcomes(bundles[1], paths),
    }


@pytest.fixture(scope="module")
def compared(bundles, tiny_dataset, tmp_path_factory):
    return compare_models(*bundles, data=tiny_dataset, out_dir=tmp_path_factory.mktemp("compare") / "out")


@pytest.mark.slow  # trains and exports the two bundles once per module
def test_the_paired_table_and_p_value_are_the_recounted_ones(compared, expected):
    labels, a, b = expected["labels"], expected["champion"], expected["challenger"]
    both = [i for i in range(len(labels)) if a[i] != REVIEW and b[i] != REVIEW]
    b_only = sum(a[i] == labels[i] and b[i] != labels[i] for i in both)
    c_only = sum(a[i] != labels[i] and b[i] == labels[i] for i in both)
    t = compared.payload["paired"]
    assert t["n"] == len(both) == compared.payload["paired_images"]
    assert (t["champion_only"], t["challenger_only"]) == (b_only, c_only)
    assert t["both_right"] == sum(a[i] == labels[i] == b[i] for i in both)
    assert t["both_wrong"] == len(both) - t["both_right"] - b_only - c_only
    assert t["p_value"] == pytest.approx(binomtest(b_only, b_only + c_only, 0.5).pvalue, rel=1e-12)
    for role in ("champion", "challenger"):
        assert compared.payload["models"][role]["needs_review"] == expected[role].count(REVIEW)


@pytest.mark.slow
def test_the_weaker_challenger_is_kept_out_and_the_figures_say_why(compared, expected):
    labels, a, b = expected["labels"], expected["champion"], expected["challenger"]
    both = [i for i in range(len(labels)) if REVIEW not in (a[i], b[i])]
    defects = [i for i in both if labels[i] == "defect"]
    recall = {r: sum(expected[r][i] == "defect" for i in defects) / len(defects) for r in ("champion", "challenger")}
    assert recall["challenger"] < recall["champion"]  # the fixture's premise: threshold 1.0 misses defects
    models = compared.payload["models"]
    for role in ("champion", "challenger"):
        assert models[role]["paired_figures"]["defect_recall"]["value"] == pytest.approx(recall[role])
        judged = [i for i, o in enumerate(expected[role]) if o != REVIEW]
        accuracy = models[role]["figures"]["accuracy"]
        assert (accuracy["k"], accuracy["n"]) == (sum(expected[role][i] == labels[i] for i in judged), len(judged))
        lo, hi = accuracy["ci"]
        assert lo <= accuracy["value"] <= hi
    assert compared.decision == KEEP and not compared.promoted
    assert "recall" in compared.payload["verdict"]["reasons"][0]


@pytest.mark.slow
def test_the_report_and_the_csv_list_exactly_the_disagreeing_images(compared, expected):
    disagree = [f for f, x, y in zip(expected["files"], expected["champion"], expected["challenger"], strict=True)
                if x != y]  # fmt: skip
    assert disagree  # the premise: the two differ somewhere
    page = compared.report_path.read_text(encoding="utf-8")
    listed = [html.unescape(m) for m in re.findall(r'<td class="file">(.*?)</td>', page)]
    assert listed == disagree
    with compared.csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == disagree
    by_file = dict(zip(expected["files"], zip(expected["champion"], expected["challenger"], strict=True), strict=True))
    assert all((r["champion"], r["challenger"]) == by_file[r["file"]] for r in rows)
    assert page.count('<img alt="') == sum(o != REVIEW for f in disagree for o in by_file[f])  # an overlay each
    assert "keep champion" in page and "McNemar" in page


@pytest.mark.slow
def test_the_cli_exits_5_to_keep_the_champion_and_0_to_promote(bundles, tiny_dataset, tmp_path, capsys):
    champion, challenger = (str(b) for b in bundles)
    keep = main(["compare", champion, challenger, "--data", str(tiny_dataset), "--out", str(tmp_path / "a")])
    assert keep == EXIT_KEEP_CHAMPION == 5
    assert "verdict: KEEP CHAMPION" in capsys.readouterr().out
    promote = main(["compare", challenger, champion, "--data", str(tiny_dataset), "--out", str(tmp_path / "b")])
    assert promote == EXIT_OK
    out = capsys.readouterr().out
    assert "verdict: PROMOTE" in out and "exact McNemar p =" in out
    again = main(["compare", challenger, champion, "--data", str(tiny_dataset), "--out", str(tmp_path / "b")])
    assert again == EXIT_USAGE and "--force" in capsys.readouterr().err


@pytest.mark.slow
def test_a_challenger_with_other_classes_is_refused_naming_both_lists(bundles, constant_bundle, tiny_dataset, tmp_path):
    with pytest.raises(DefectlensError, match=r"\['crack', 'ok', 'scratch'\].*\['ok', 'defect'\]"):
        compare_models(bundles[0], constant_bundle("three_classes"), data=tiny_dataset, out_dir=tmp_path)
    assert not (tmp_path / "comparison.json").exists()


@pytest.mark.slow
def test_a_challenger_with_other_input_channels_is_compared(bundles, tiny_dataset, tmp_path):
    rgb = _export(make_checkpoint(tmp_path / "rgb-run", in_channels=3), tmp_path / "rgb.dlens", None)  # no gate
    result = compare_models(bundles[0], rgb, data=tiny_dataset, out_dir=tmp_path / "out", overlays=0)
    assert result.payload["models"]["challenger"]["spec"]["in_channels"] == 3
    assert result.payload["images"] == len(Manifest.read(tiny_dataset).split("test"))
    assert "<img" not in result.report_path.read_text(encoding="utf-8")  # overlays=0


def _variant(tiny_dataset: Path, folder: Path, change, **info) -> Path:
    source = Manifest.read(tiny_dataset)
    return Manifest(records=[change(r) for r in source.records], info={**source.info, **info}).write(folder)


@pytest.mark.slow
def test_a_dataset_without_the_split_is_refused(bundles, tiny_dataset, tmp_path):
    no_test = _variant(tiny_dataset, tmp_path / "ds", lambda r: Record(**{**r.__dict__, "split": "val"})
                       if r.split == "test" else r)  # fmt: skip
    with pytest.raises(DefectlensError, match=r"no 'test' split \(its splits: train, val\)"):
        compare_models(*bundles, data=no_test, out_dir=tmp_path / "out")


@pytest.mark.slow
def test_a_split_with_labels_the_models_lack_is_refused(bundles, tiny_dataset, tmp_path, capsys):
    def relabel(r: Record) -> Record:
        return Record(**{**r.__dict__, "label": "scratch"}) if r.path.endswith("_039.png") else r

    odd = _variant(tiny_dataset, tmp_path / "ds", relabel, classes=["ok", "defect", "scratch"])
    code = main(["compare", *(str(b) for b in bundles), "--data", str(odd), "--out", str(tmp_path / "out")])
    assert code == EXIT_USAGE
    assert "the test split has labels ['scratch'] that the champion does not have" in capsys.readouterr().err


def test_defects_of_a_multi_class_task_are_every_class_but_the_good_one():
    def spec(*names: str) -> ModelSpec:
        return ModelSpec("simple_cnn", 32, 1, (0.5,), (0.25,), class_names=names).check()

    rule = defect_rule(spec("crack", "ok", "scratch"), None)
    assert rule is not None and [rule(c) for c in ("crack", "ok", "scratch")] == [True, False, True]
    assert defect_rule(spec("crazing", "inclusion", "patches"), None) is None  # NEU: no good class
    binary = defect_rule(spec("ok", "defect"), "defect")
    assert binary is not None and binary("defect") and not binary("ok")


def test_a_model_that_cannot_be_explained_gets_a_note_instead_of_an_overlay(tmp_path):
    predictor = scripted_predictor("defect_last")
    row = DisagreementRow(
        file="a.png", label="defect", image=tmp_path / "a.png", champion="defect", champion_confidence=0.8,
        champion_defect_probability=0.8, champion_right=True, challenger=REVIEW, challenger_confidence=None,
        challenger_defect_probability=None, challenger_right=False,
    )  # fmt: skip
    payload = {
        "verdict": {"decision": PROMOTE, "reasons": ["r"], "rule": "x"},
        "dataset": {"data": "d", "name": "tiny", "split": "test"},
        "costs": {"cost_fn": 10.0, "cost_fp": 1.0, "from": "default"},
        "images": 1,
        "models": {
            r: {"source": f"{r}.dlens", "needs_review": 0, "figures": {"images": 1}} for r in ("champion", "challenger")
        },
        "paired": {"n": 0, "both_right": 0, "champion_only": 0, "challenger_only": 0, "both_wrong": 0, "p_value": 1.0},
    }
    page = render(payload, [row], predictors={"champion": predictor, "challenger": predictor})
    assert "no overlay: this model has no feature output for a CAM and no torch weights" in page
    assert "needs review: no class to explain" in page and "<img" not in page
    assert np.isfinite(payload["paired"]["p_value"])
