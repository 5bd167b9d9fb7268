"""benchmarks/run_defect_budget.py: N labelled defects across train and validation (about 80/20, at least 1 in
validation), every good image kept, the test split untouched, seeded and nested; the README table between its
markers."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from defectlens.data.manifest import Manifest, Record
from tests.benchmark_scripts import load_benchmark

GOOD, BAD = "ok_front", "def_front"


@pytest.fixture(scope="module")
def budget():
    return load_benchmark("run_defect_budget")


@pytest.fixture
def manifest(tmp_path) -> Manifest:
    """Casting-shaped: 60 + 8 defects and 40 + 5 good parts in train + val, 9 + 7 in test (no image files:
    selection reads the rows only)."""
    rows = []
    for split, bad, good in (("train", 60, 40), ("val", 8, 5), ("test", 9, 7)):
        rows += [Record(f"{split}/{BAD}/d{i}.jpeg", BAD, split, sha256=f"{split}d{i}") for i in range(bad)]
        rows += [Record(f"{split}/{GOOD}/g{i}.jpeg", GOOD, split, sha256=f"{split}g{i}") for i in range(good)]
    return Manifest(records=rows, info={"classes": [BAD, GOOD], "root": str(tmp_path / "source")})


def defects(m: Manifest) -> dict[str, set[str]]:
    return {s: {r.path for r in m.split(s) if r.label == BAD} for s in ("train", "val")}


@pytest.mark.parametrize(("n", "train", "val"), [(2, 1, 1), (5, 4, 1), (20, 16, 4), (50, 40, 10), (68, 54, 14)])
def test_budget_keeps_n_defects_split_80_20_and_every_good_image(budget, manifest, n, train, val):
    out = budget.select_budget(manifest, n, seed=0, normal=GOOD)
    chosen = defects(out)
    assert (len(chosen["train"]), len(chosen["val"])) == (train, val)
    pool = {r.path for r in manifest.records if r.split != "test" and r.label == BAD}
    assert chosen["train"] | chosen["val"] <= pool
    assert not chosen["train"] & chosen["val"]
    goods = Counter(r.split for r in out.records if r.label == GOOD and r.split != "test")
    assert goods == {"train": 40, "val": 5}
    assert out.split("test") == manifest.split("test")  # same records, same order
    assert out.info["defect_budget"] == {"defects": n, "val": val, "seed": 0}


def test_choice_is_seeded_and_nested(budget, manifest):
    def chosen(n: int, seed: int) -> set[str]:
        d = defects(budget.select_budget(manifest, n, seed=seed, normal=GOOD))
        return d["train"] | d["val"]

    assert chosen(20, 0) == chosen(20, 0)
    assert chosen(20, 0) != chosen(20, 1)
    assert chosen(5, 0) < chosen(20, 0) < chosen(50, 0)  # a user with more labels has the smaller set too
    five = defects(budget.select_budget(manifest, 5, seed=0, normal=GOOD))
    twenty = defects(budget.select_budget(manifest, 20, seed=0, normal=GOOD))
    assert five["val"] <= twenty["val"]


@pytest.mark.parametrize("n", [0, 1, 69])
def test_impossible_budget_is_refused_naming_it(budget, manifest, n):
    with pytest.raises(ValueError, match=rf"\b{n}\b"):
        budget.select_budget(manifest, n, seed=0, normal=GOOD)


def test_written_budget_links_the_original_images(budget, manifest, tmp_path):
    folder = budget.select_budget(manifest, 5, seed=0, normal=GOOD).write(tmp_path / "n5")
    back = Manifest.read(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.json", "manifest.csv"]  # no copies
    assert back.root == manifest.root
    assert {r.path for r in back.records} <= {r.path for r in manifest.records}
    assert back.counts() == {
        "train": {BAD: 4, GOOD: 40},
        "val": {BAD: 1, GOOD: 5},
        "test": {BAD: 9, GOOD: 7},
    }


def _row(defects_used: int, recall: float, **extra) -> dict:
    return {
        "defects_used": defects_used,
        "accuracy": 0.9,
        "defect_recall": recall,
        "false_alarm_rate": 0.01,
        "image_auroc": 0.95,
        "recall_at_1pct_false_alarms": None,
        "train_seconds": 300.0,
        **extra,
    }


def test_readme_table_goes_between_the_markers_only(budget, tmp_path):
    result = {
        "rows": {
            "20": _row(20, 0.812, defects={"train": 16, "val": 4}),
            "anomaly": _row(0, 0.254),
            "5": _row(5, 0.5, defects={"train": 4, "val": 1}),
        }
    }
    start, end = budget.MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\n## Anomaly mode\n\nbefore\n{start}\nold table\n{end}\nafter\n")
    assert budget.update_readme(result, readme)
    text = readme.read_text()
    assert text.startswith("# T\n\n## Anomaly mode\n\nbefore\n") and text.endswith(f"{end}\nafter\n")
    assert "old table" not in text
    body = text.split(start)[1].split(end)[0]
    lines = [line for line in body.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split(" | ")[0] for line in lines] == ["| 0", "| 5 (4 + 1)", "| 20 (16 + 4)"]  # anomaly first
    assert "| 0.812 |" in lines[2] and "docs/defect-budget.png" in body
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not budget.update_readme(result, plain)
    assert plain.read_text() == "no markers\n"


def test_save_keeps_rows_another_run_wrote_beside_it(budget, tmp_path):
    path = tmp_path / "defect-budget.json"
    other = {"rows": {"5": _row(5, 0.5), "all": _row(3758, 0.99, source="benchmarks/results/casting.json")}}
    path.write_text(json.dumps(other))
    mine = {"rows": {"20": _row(20, 0.8), "5": _row(5, 0.1)}}
    budget.save(mine, path, trained={"20"})
    rows = json.loads(path.read_text())["rows"]
    assert rows["5"]["defect_recall"] == 0.5  # the other run's row, which this run did not train
    assert rows["20"]["defect_recall"] == 0.8
    assert "all" not in rows  # a reference row is re-read from its source, never carried over
    budget.save({"rows": {"5": _row(5, 0.7)}}, path, trained={"5"})
    assert json.loads(path.read_text())["rows"]["5"]["defect_recall"] == 0.7  # its own retrained row wins


def test_the_all_row_is_this_cpus_seed_run_when_there_is_one(budget, tmp_path):
    def test(acc):
        return {"accuracy": acc, "defect_recall": acc, "false_alarm_rate": 0.0, "roc_auc": 1.0, "n": 715}

    def machine(cpu):
        return {"cpu": cpu, "cores": 2, "versions": {"defectlens": "0.3.0"}}

    split = {s: {BAD: 10, GOOD: 5} for s in ("train", "val", "test")}
    runs = [
        {"seed": 0, "cpu": "Intel Xeon", "test": test(0.95), "machine": machine("Intel Xeon"), "run_dir": "/gone/a"},
        {"seed": 1, "cpu": "Intel Xeon", "test": test(0.96), "machine": machine("Intel Xeon"), "run_dir": "/gone/b"},
        {"seed": 0, "cpu": "Intel Xeon", "test": test(0.97), "machine": machine("Intel Xeon"), "run_dir": "/gone/c"},
    ]
    casting = {
        "split": split,
        "machine": machine("AMD EPYC"),
        "approaches": {"ours": {"test": test(0.99), "run_dir": "/gone/ours", "train_seconds": 60.0}},
        "seeds": {"runs": runs},
    }
    (tmp_path / "casting.json").write_text(json.dumps(casting))
    row = budget.all_from_casting_json(tmp_path, cpu="Intel Xeon", seed=0)
    assert row["accuracy"] == 0.97 and row["run_dir"] == "/gone/c"  # the newest run of that seed on that CPU
    assert "Intel Xeon" in row["machine"] and "--seeds, seed 0" in row["source"]
    assert row["defects_used"] == 20 and row["recall_at_1pct_false_alarms"] is None  # its folder is gone
    other = budget.all_from_casting_json(tmp_path, cpu="AMD EPYC", seed=0)  # no seed run there: the table's run
    assert other["accuracy"] == 0.99 and "AMD EPYC" in other["machine"]
    assert budget.all_from_casting_json(tmp_path / "missing", cpu="Intel Xeon") is None

    # regenerating the table on a clone without the run's folder keeps the figure read from its predictions
    kept = {"machine": {"cpu": "Intel Xeon"}, "seed": 0, "rows": {"all": {**row, "recall_at_1pct_false_alarms": 1.0}}}
    budget.reference_rows(kept, tmp_path)
    assert kept["rows"]["all"]["recall_at_1pct_false_alarms"] == 1.0 and kept["rows"]["all"]["accuracy"] == 0.97
    runs.append({**runs[2], "run_dir": "/gone/d", "test": test(0.98)})  # a newer run of that seed: a new row
    (tmp_path / "casting.json").write_text(json.dumps(casting))
    budget.reference_rows(kept, tmp_path)
    assert kept["rows"]["all"]["recall_at_1pct_false_alarms"] is None and kept["rows"]["all"]["accuracy"] == 0.98
