"""The README results table that benchmarks/run_real.py renders from results/<dataset>.json."""

from __future__ import annotations

import json

from tests.benchmark_scripts import load_benchmark


def _run_real():
    return load_benchmark("run_real")


def _entry(acc: float, *, ece: float, val_ece: float, model: str = "efficientnet_lite0", pretrained=True):
    return {
        "test": {
            "accuracy": acc,
            "macro_f1": acc - 0.01,
            "defect_recall": 0.9,
            "ece": ece,
            "ci": {"accuracy": [acc - 0.02, acc + 0.01]},
        },
        "ece_after": val_ece,
        "model": model,
        "pretrained": pretrained,
        "input_size": 192 if pretrained else 128,
        "train_seconds": 600.0,
        "latency_ms_p50": 7.25,
    }


def test_table_rows_test_ece_demo_row_and_cv_note(tmp_path):
    rr = _run_real()
    casting = {
        "smoke": False,
        "approaches": {
            "ours": _entry(0.9925, ece=0.0075, val_ece=1e-9),
            "simple_cnn": _entry(0.85, ece=0.04, val_ece=0.03, model="simple_cnn", pretrained=False),
        },
        "cv": {
            "folds": 5,
            "accuracy_mean": 0.996,
            "accuracy_min": 0.99,
            "errors": 3,
            "images": 600,
            "pooled_accuracy": 0.995,
            "defects": 400,
            "missed_defects": 2,
            "pooled_defect_recall": 0.995,
        },
    }
    elpv = {  # bench_demo.py writes the demo's figures at the top level, run_real.py the baselines
        "smoke": False,
        "test": {"accuracy": 0.8838, "macro_f1": 0.86, "defect_recall": 0.76, "ece": 0.0185},
        "recipe": "model: efficientnet_lite0\ninput_size: 192\n",
        "wall_time_s": 625.0,
        "latency_ms_p50": 9.3,
        "approaches": {"frozen_lite0": _entry(0.856, ece=0.05, val_ece=0.01)},
    }
    smoke = {"smoke": True, "approaches": {"ours": _entry(0.5, ece=0.1, val_ece=0.1)}}
    for name, payload in (("casting", casting), ("elpv", elpv), ("neu-6", smoke)):
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))

    table = rr.results_table(tmp_path)
    rows = [line for line in table.splitlines() if line.startswith("| casting") or line.startswith("| elpv")]
    assert len(rows) == 4 and "neu-6" not in table  # smoke results never reach the README
    ours = rows[0].split(" | ")
    assert ours[3] == "0.9925 [0.973, 1.002]" and ours[6] == "0.0075"  # the test ECE, not the in-sample val one
    assert "simple_cnn (from scratch, 128 px)" in rows[1]
    assert rows[2].startswith("| elpv | ours (make demo) | efficientnet_lite0 (ImageNet, 192 px) | 0.8838")
    assert "10.4 min" in rows[2] and "0.0185" in rows[2]
    assert "5-fold cross-validation" in table and "3 errors in 600 test images" in table
    assert "defect recall 0.9950 (2 of 400 defects missed)" in table


def test_label_review_note_counts_contradicted_and_shared_errors(tmp_path):
    rr = _run_real()
    errors = [
        {"path": "a.png", "label": "def", "prediction": "ok", "p_label": 0.002},
        {"path": "b.png", "label": "def", "prediction": "ok", "p_label": 0.3},
        {"path": "c.png", "label": "ok", "prediction": "def", "p_label": 0.009},
    ]
    assert rr.contradicted(errors) == ["a.png", "c.png"]  # below 1 %, whatever the class
    assert rr.contradicted(errors, below=0.001) == []
    ours, other = _entry(0.99, ece=0.01, val_ece=0.0), _entry(0.98, ece=0.01, val_ece=0.0)
    ours["test_errors"] = [errors[0], errors[1]]
    other["test_errors"] = [errors[1], {"path": "d.png", "label": "ok", "prediction": "def", "p_label": 0.1}]
    casting = {
        "smoke": False,
        "approaches": {"ours": ours, "simple_cnn": other},
        "cv": {
            "folds": 5,
            "accuracy_mean": 0.99,
            "accuracy_min": 0.98,
            "errors": 3,
            "images": 300,
            "pooled_accuracy": 0.99,
            "contradicted_below": 0.01,
            "contradicted": rr.contradicted(errors),
        },
    }
    (tmp_path / "casting.json").write_text(json.dumps(casting))
    table = rr.results_table(tmp_path)
    assert "2 of these 3 out-of-fold errors gave their recorded label less than 1% probability" in table
    # a.png is contradicted out of fold; b.png is the one error both approaches make
    assert "errors on the fixed test split: 2; also contradicted out of fold: 1; made by all 2 approaches: 1." in table


def test_slice_note_from_the_demo_json(tmp_path):
    rr = _run_real()
    elpv = {
        "smoke": False,
        "test": {"accuracy": 0.9, "macro_f1": 0.88, "defect_recall": 0.8, "ece": 0.02},
        "wall_time_s": 400.0,
        "test_slices": {
            "type": [
                {"value": "mono", "n": 10, "errors": 1, "defects": 4, "missed_defects": 1},
                {"value": "poly", "n": 12, "errors": 3, "defects": 0, "missed_defects": 0},
            ]
        },
    }
    (tmp_path / "elpv.json").write_text(json.dumps(elpv))
    table = rr.results_table(tmp_path)
    assert "- elpv, our recipe's test errors by `type`: mono: 1 of 10 (1 of 4 defects missed); poly: 3 of 12." in table


def test_readme_table_is_replaced_between_markers(tmp_path):
    rr = _run_real()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "casting.json").write_text(
        json.dumps({"smoke": False, "approaches": {"ours": _entry(0.99, ece=0.01, val_ece=0.0)}})
    )
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- RESULTS:START -->\nold table\n<!-- RESULTS:END -->\noutro\n")
    rr.update_readme(tmp_path / "results", readme)
    text = readme.read_text()
    assert "old table" not in text and "| casting | ours |" in text
    assert text.startswith("intro\n") and text.endswith("outro\n")


def test_a_row_measured_with_an_earlier_recipe_says_so_and_what_changed(tmp_path):
    rr = _run_real()
    current = rr.recipe(rr.DATASETS["casting"], "ours", data=tmp_path, work=tmp_path, smoke=False, seed=0).to_dict()
    fresh = _entry(0.99, ece=0.01, val_ece=0.01) | {"config": current}
    older = _entry(0.98, ece=0.01, val_ece=0.01) | {"config": {**current, "epochs": current["epochs"] - 1}}
    cv = {"folds": 5, "accuracy_mean": 0.99, "accuracy_min": 0.98, "errors": 1, "images": 100, "pooled_accuracy": 0.99}
    for payload, label in ((fresh, "| casting | ours |"), (older, "| casting | ours (earlier recipe) |")):
        (tmp_path / "casting.json").write_text(json.dumps({"smoke": False, "approaches": {"ours": payload}, "cv": cv}))
        table = rr.results_table(tmp_path)
        assert label in table
        earlier = payload is older
        assert (f"epochs: {current['epochs'] - 1}, now {current['epochs']}" in table) is earlier
        assert ("our earlier recipe under 5-fold" in table) is earlier
    # a run folder or a worker count is not a recipe change; an entry that recorded no config is not judged
    moved = _entry(0.99, ece=0.01, val_ece=0.01) | {"config": {**current, "out": "/elsewhere", "workers": 7}}
    assert rr.recipe_changes(rr.DATASETS["casting"], "ours", moved) == ""
    assert rr.recipe_changes(rr.DATASETS["casting"], "ours", _entry(0.9, ece=0.1, val_ece=0.1)) == ""


def test_cross_validation_is_judged_by_the_recipe_it_ran(tmp_path):
    rr = _run_real()
    current = rr.recipe(rr.DATASETS["casting"], "ours", data=tmp_path, work=tmp_path, smoke=False, seed=0).to_dict()
    cv = {"folds": 5, "accuracy_mean": 0.99, "accuracy_min": 0.98, "errors": 1, "images": 100, "pooled_accuracy": 0.99}
    ours = {"ours": _entry(0.99, ece=0.01, val_ece=0.01) | {"config": current}}
    for cv_config, phrase in ((current, "our recipe under"), ({**current, "epochs": 1}, "our earlier recipe under")):
        payload = {"smoke": False, "approaches": ours, "cv": cv | {"config": cv_config}}
        (tmp_path / "casting.json").write_text(json.dumps(payload))
        assert phrase in rr.results_table(tmp_path)


def test_accuracy_interval_is_exact_binomial_from_the_counts(tmp_path):
    rr = _run_real()
    perfect = _entry(1.0, ece=0.001, val_ece=0.001)
    perfect["test"] |= {"n": 715, "ci": {"accuracy": [1.0, 1.0]}}  # what a percentile bootstrap stored
    (tmp_path / "casting.json").write_text(json.dumps({"smoke": False, "approaches": {"ours": perfect}}))
    row = next(line for line in rr.results_table(tmp_path).splitlines() if line.startswith("| casting"))
    assert row.split(" | ")[3] == "1.0000 [0.995, 1.000]"


def test_our_rows_carry_the_seed_spread_per_cpu_and_rows_without_seeds_say_how_to_get_it(tmp_path):
    rr = _run_real()
    spread = {"n": 5, "mean": 0.8881, "sd": 0.0088, "min": 0.8731, "max": 0.896}
    seeded = {
        "smoke": False,
        "approaches": {"ours": _entry(0.89, ece=0.01, val_ece=0.01), "simple_cnn": _entry(0.8, ece=0.1, val_ece=0.1)},
        "seeds": {
            "by_cpu": {
                "Intel(R) Xeon(R) Processor": {"seeds": [0, 1, 2, 3, 4], "accuracy": spread},
                "AMD EPYC 9B14": {
                    "seeds": [0],
                    "accuracy": {"n": 1, "mean": 0.893, "sd": 0.0, "min": 0.893, "max": 0.893},
                },
            }
        },
    }
    bare = {"smoke": False, "approaches": {"ours": _entry(0.99, ece=0.01, val_ece=0.01)}}
    (tmp_path / "elpv.json").write_text(json.dumps(seeded))
    (tmp_path / "casting.json").write_text(json.dumps(bare))
    table = rr.results_table(tmp_path)
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and " | " in line]
    cells = {row[0] + row[1]: row[-1] for row in rows}
    assert cells["| elpvours"] == (
        "0.8881 ± 0.0088 [0.8731-0.8960], 5 seeds (Intel Xeon); "
        "0.8930 ± 0.0000 [0.8930-0.8930], 1 seed (AMD EPYC 9B14) |"
    )
    assert cells["| elpvsimple_cnn"] == " |"  # only our recipe is trained over seeds
    assert cells["| castingours"] == "– |"
    assert (
        "- No seed runs of our recipe yet for casting: `python benchmarks/run_real.py --datasets NAME --seeds 5`"
        in table
    )


def test_rows_of_one_dataset_from_different_cpus_name_their_cpu(tmp_path):
    rr = _run_real()
    amd, intel = {"cpu": "AMD EPYC 9B14"}, {"cpu": "Intel(R) Xeon(R) Processor"}
    neu = {
        "smoke": False,
        "machine": intel,  # the newest run's machine; the kept row carries its own
        "approaches": {
            "simple_cnn": {
                **_entry(0.93, ece=0.04, val_ece=0.03, model="simple_cnn", pretrained=False),
                "machine": amd,
            },
            "ours": {**_entry(0.9969, ece=0.005, val_ece=0.005), "machine": intel},
        },
    }
    same = {"smoke": False, "machine": amd, "approaches": {"ours": _entry(0.99, ece=0.01, val_ece=0.01)}}
    (tmp_path / "neu-6.json").write_text(json.dumps(neu))
    (tmp_path / "casting.json").write_text(json.dumps(same))
    rows = [line.split(" | ")[:2] for line in rr.results_table(tmp_path).splitlines() if line.startswith("| ")]
    assert ["| neu-6", "ours (on Intel Xeon)"] in rows and ["| neu-6", "simple_cnn (on AMD EPYC 9B14)"] in rows
    assert ["| casting", "ours"] in rows  # one CPU for the whole dataset: named once, in the prose
