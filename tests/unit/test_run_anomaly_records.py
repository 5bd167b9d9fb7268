"""How ``benchmarks/run_anomaly.py`` writes a run into its dataset's JSON: a new run of the recipe replaces the
record but keeps what does not depend on it (the peers' rows, the sweep, the variants); a variant goes beside
the record and leaves it as it is."""

from __future__ import annotations

import json

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("run_anomaly")


def _existing(path):
    path.write_text(
        json.dumps(
            {
                "image": {"image_auroc": 0.92},
                "peers": {"anomalib_patchcore": {"image": {"image_auroc": 0.9}}},
                "sweep": [{"input": 320}],
                "variants": {"no-position-norm": {"image": {"image_auroc": 0.92}}},
            }
        )
    )


def test_a_new_run_replaces_the_record_and_keeps_peers_sweep_and_variants(bench, tmp_path):
    path = tmp_path / "anomaly-casting.json"
    _existing(path)
    bench.write_record(path, {"image": {"image_auroc": 0.955}, "settings": {"position_norm": True}})
    out = json.loads(path.read_text())
    assert out["image"]["image_auroc"] == 0.955 and out["settings"] == {"position_norm": True}
    assert out["peers"]["anomalib_patchcore"]["image"]["image_auroc"] == 0.9
    assert out["sweep"] == [{"input": 320}]
    assert out["variants"]["no-position-norm"]["image"]["image_auroc"] == 0.92


def test_a_variant_goes_beside_the_record_which_stays(bench, tmp_path):
    path = tmp_path / "anomaly-casting.json"
    _existing(path)
    bench.write_record(path, {"image": {"image_auroc": 0.96}}, variant="floor-1")
    out = json.loads(path.read_text())
    assert out["image"]["image_auroc"] == 0.92  # the recipe's record is untouched
    assert out["variants"]["floor-1"]["image"]["image_auroc"] == 0.96
    assert out["variants"]["no-position-norm"]["image"]["image_auroc"] == 0.92


def test_the_first_run_of_a_dataset_writes_a_fresh_file(bench, tmp_path):
    path = tmp_path / "anomaly-bottle.json"
    bench.write_record(path, {"image": {"image_auroc": 1.0}})
    assert json.loads(path.read_text()) == {"image": {"image_auroc": 1.0}}
