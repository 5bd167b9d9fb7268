"""Split properties: fractions, stratification, determinism, duplicate groups, official splits."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from defectlens.core.errors import DefectlensError
from defectlens.data.importers import import_dataset
from defectlens.data.manifest import Manifest, Record, replace
from defectlens.data.split import split_manifest
from tests.unit.data.conftest import write_image


def _synthetic(n_ok: int = 60, n_ng: int = 40) -> Manifest:
    """Records without files; :func:`_far_hashes` gives each one a perceptual hash."""
    recs = []
    for i in range(n_ok + n_ng):
        label = "ok" if i < n_ok else "ng"
        recs.append(Record(path=f"{label}/{i}.png", label=label, sha256=f"sha{i}", meta={"kind": i % 2}))
    return Manifest(recs, {"classes": ["ng", "ok"], "root": "."})


def _far_hashes(m: Manifest) -> Manifest:
    # random 256-bit hashes are ~128 bits apart, far beyond the near-duplicate threshold
    import numpy as np

    rng = np.random.default_rng(123)
    recs = [
        Record(
            **{**r.__dict__, "meta": {**r.meta, "phash": "".join(f"{int(x):016x}" for x in rng.integers(0, 2**63, 4))}}
        )
        for r in m.records
    ]
    return Manifest(recs, m.info)


def test_fractions_stratification_and_determinism() -> None:
    m = _far_hashes(_synthetic())
    s = split_manifest(m, val=0.1, test=0.2, seed=0, stratify_meta=("kind",))
    counts = s.counts()
    assert counts == {"train": {"ok": 42, "ng": 28}, "val": {"ok": 6, "ng": 4}, "test": {"ok": 12, "ng": 8}}
    by = Counter((r.split, r.label, r.meta["kind"]) for r in s.records)
    assert by[("test", "ok", 0)] == by[("test", "ok", 1)] == 6  # stratified on meta too
    assert [r.split for r in split_manifest(m, seed=0, stratify_meta=("kind",)).records] == [r.split for r in s.records]
    assert [r.split for r in split_manifest(m, seed=1).records] != [r.split for r in s.records]
    assert s.info["split"]["seed"] == 0 and s.info["split"]["phash_threshold"] == 8
    assert s.info["split"]["counts"] == counts


def test_duplicates_never_straddle_splits() -> None:
    m = _far_hashes(_synthetic())
    recs = list(m.records)
    for k in range(0, 30, 3):  # 10 triples of byte-identical files
        recs[k + 1] = Record(**{**recs[k + 1].__dict__, "sha256": recs[k].sha256})
        recs[k + 2] = Record(**{**recs[k + 2].__dict__, "meta": recs[k].meta})  # same phash
    for seed in range(5):
        s = split_manifest(Manifest(recs, m.info), seed=seed)
        splits_of = {}
        for r in s.records:
            splits_of.setdefault(r.group, set()).add(r.split)
        assert all(len(v) == 1 for v in splits_of.values())
        assert s.info["split"]["report"]["duplicate_groups"] == 10
        assert s.info["split"]["report"]["group_size_histogram"]["3"] == 10


def _casting_with_leak(root: Path) -> Path:
    for split in ("train", "test"):
        for c in ("def_front", "ok_front"):
            for i in range(10):
                write_image(root / split / c / f"{c}_{i}.png", hash((split, c, i)) % 100_000)
    shutil.copy(root / "test" / "ok_front" / "ok_front_0.png", root / "train" / "ok_front" / "copy.png")
    return root


def test_official_test_kept_and_cross_duplicates_flagged(tmp_path: Path) -> None:
    m = import_dataset(_casting_with_leak(tmp_path), fmt="casting")
    s = split_manifest(m, val=0.2, test=0.5, seed=0)
    assert [r.path for r in s.records if r.split == "test"] == [r.path for r in m.records if r.split == "test"]
    assert s.counts()["val"] == {"def_front": 2, "ok_front": 2}  # 20% of official train, test fraction ignored
    rep = s.info["split"]["report"]
    assert rep["cross_split_groups"] == 1
    assert rep["cross_split_duplicates"][0]["paths"] == {
        "test/ok_front/ok_front_0.png": "test/ok_front",
        "train/ok_front/copy.png": "train/ok_front",
    }
    dropped = split_manifest(m, val=0.2, seed=0, drop_cross_duplicates=True)
    assert dropped.info["split"]["dropped_cross_duplicates"] == ["train/ok_front/copy.png"]
    assert len(dropped.records) == len(m.records) - 1
    fresh = split_manifest(m, val=0.1, test=0.2, keep_official=False)
    assert fresh.info["split"]["report"]["cross_split_groups"] == 0


def test_split_computes_missing_phash_and_rejects_bad_fractions(tiny_dataset: Path) -> None:
    m = Manifest.read(tiny_dataset)
    s = split_manifest(m, keep_official=False, seed=3)
    assert {r.split for r in s.records} == {"train", "val", "test"} and all(r.group for r in s.records)
    for bad, message in (
        ({"val": 0.5, "test": 0.5}, "leave 0.00 for training"),
        ({"val": 0.5, "test": 0.49}, "leave 0.01 for training"),
        ({"val": 0.0, "test": 0.0, "keep_official": False}, "left val empty"),
        ({"val": -0.1}, r"--val -0.1: a fraction"),
        ({"seed": -1}, "seeds are integers >= 0"),
        ({"phash_threshold": 100000}, "must be in 0..64"),
        ({"phash_threshold": -5}, "-1 turns near-duplicate grouping off"),
    ):
        with pytest.raises(DefectlensError, match=message):
            split_manifest(m, **bad)


def test_a_train_val_layout_gets_a_test_split_carved_from_train(tiny_dataset: Path) -> None:
    m = Manifest.read(tiny_dataset)
    trainval = m.with_records([replace(r, split="train" if r.split == "test" else r.split) for r in m.records])
    s = split_manifest(trainval, test=0.25, seed=0)
    counts = {k: sum(v.values()) for k, v in s.counts().items()}
    assert counts["val"] == 16  # the source's own val is kept
    assert counts["test"] == 16 and counts["train"] == 48  # a quarter of the 64 train images
    assert s.info["split"]["official_splits"] == ["train", "val"]


def test_folds_test_every_image_once_and_keep_duplicates_together() -> None:
    from defectlens.data.split import fold_manifests

    m = _far_hashes(_synthetic())
    recs = list(m.records)
    for k in range(0, 12, 2):  # 6 pairs of byte-identical files
        recs[k + 1] = Record(**{**recs[k + 1].__dict__, "sha256": recs[k].sha256})
    folds = fold_manifests(Manifest(recs, m.info), folds=5, seed=0)
    assert len(folds) == 5
    tested = Counter(r.path for f in folds for r in f.records if r.split == "test")
    assert set(tested.values()) == {1} and len(tested) == len(recs)
    for k, f in enumerate(folds):
        counts = f.counts()
        # stratified: about 1/5 of each class (12 ok, 8 ng), off by at most one duplicate pair
        assert abs(counts["test"]["ok"] - 12) <= 2 and abs(counts["test"]["ng"] - 8) <= 2
        assert sum(counts["train"].values()) == 100 - sum(counts["test"].values()) - sum(counts["val"].values())
        assert f.info["split"]["fold"] == k
        splits_of: dict[str, set[str]] = {}
        for r in f.records:
            splits_of.setdefault(r.group, set()).add(r.split)
        assert all(len(v) == 1 for v in splits_of.values())
    # the val fold of manifest k is the test fold of manifest k + 1
    val0 = {r.path for r in folds[0].records if r.split == "val"}
    assert val0 == {r.path for r in folds[1].records if r.split == "test"}
    with pytest.raises(DefectlensError, match="folds must be >= 3"):
        fold_manifests(m, folds=2)
