"""``defectlens data import --from-log``: the command's shape, its report, and its refusals (exit 2)."""

from __future__ import annotations

import pytest

from defectlens.cli import main
from defectlens.data.manifest import MANIFEST_FILE, Manifest
from defectlens.inspections import ImageStore, InspectionLog
from tests.unit.workflows.test_from_log import nudged, png, record


@pytest.fixture
def log_dir(tmp_path):
    """A log whose two stored images an operator reviewed (one confirmed defect, one overridden to ok),
    a third left unreviewed and a fourth whose stored file is gone."""
    store = ImageStore(tmp_path / "store")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        confirmed = record(log, store, png(1), prediction="defect")
        overridden = record(log, store, png(2), prediction="defect")
        record(log, store, png(3), prediction="ok")
        gone = record(log, store, png(4), prediction="ok")
        log.set_verdict(confirmed, "confirmed", operator="ana")
        log.set_verdict(overridden, "overridden", label="ok", operator="ben")
        log.set_verdict(gone, "confirmed", operator="ana")
        (store.path(str(log.get(gone).image_path))).unlink()
    return tmp_path


def test_import_from_log_writes_a_dataset_and_says_what_it_left_out(log_dir, capsys):
    out = log_dir / "ds"
    args = ["data", "import", "--from-log", f"sqlite:///{log_dir / 'log.sqlite'}", "--images", str(log_dir / "store")]
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 inspection(s), 4 with a stored image; labelled by an operator 2, by the model 0" in text
    assert "1 awaiting a verdict" in text and "1 stored image(s) missing" in text
    assert "stored image missing from" in text  # the skipped file, named
    m = Manifest.read(out)
    assert sorted(r.label for r in m.records) == ["defect", "ok"]
    assert main([*args, "--out", str(out)]) == 2  # a dataset is there: its split is not replaced silently
    assert "already holds a dataset" in capsys.readouterr().err


def test_merge_into_writes_in_place_and_reports(log_dir, capsys):
    first = [log_dir / "parts" / "defect" / "a.png", log_dir / "parts" / "ok" / "b.png"]
    for i, path in enumerate(first):
        path.parent.mkdir(parents=True)
        path.write_bytes(png(50 + i))
    ds = log_dir / "ds"
    assert main(["data", "import", str(log_dir / "parts"), "--out", str(ds)]) == 0
    before = (ds / MANIFEST_FILE).read_text(encoding="utf-8")
    args = ["data", "import", "--from-log", str(log_dir / "log.sqlite"), "--images", str(log_dir / "store")]
    assert main([*args, "--merge-into", str(ds)]) == 0
    text = capsys.readouterr().out
    assert f"merged into {ds}: added unsplit 2" in text
    assert (ds / MANIFEST_FILE).read_text(encoding="utf-8").startswith(before)
    assert len(Manifest.read(ds).records) == 4


def test_merge_into_a_split_dataset_names_what_it_kept_out_of_train(tmp_path, capsys):
    for label, base in (("bad", 100), ("good", 200)):
        (tmp_path / "parts" / label).mkdir(parents=True)
        for i in range(10):
            (tmp_path / "parts" / label / f"{i}.png").write_bytes(png(base + i))
    ds = tmp_path / "ds"
    assert main(["data", "import", str(tmp_path / "parts"), "--out", str(ds)]) == 0
    assert main(["data", "split", str(ds), "--seed", "0"]) == 0
    old = Manifest.read(ds)
    test_img = next(r for r in old.split("test") if r.label == "good")
    store = ImageStore(tmp_path / "store")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        copy = record(log, store, old.resolve(test_img).read_bytes(), prediction="good")
        reshot = record(log, store, nudged(old, test_img), prediction="good")
        log.set_verdict(copy, "confirmed", operator="ana")
        log.set_verdict(reshot, "overridden", label="bad", operator="ben")  # the dataset says good: one is wrong
    capsys.readouterr()
    args = ["data", "import", "--from-log", str(tmp_path / "log.sqlite"), "--images", str(tmp_path / "store")]
    assert main([*args, "--merge-into", str(ds)]) == 0
    text = capsys.readouterr().out
    assert f"merged into {ds}: added test 1; the split of its images is unchanged" in text
    assert (
        f"kept out of train: inspection {reshot} (" in text and f"(a duplicate of test image {test_img.path})" in text
    )
    assert f"left out: inspection {copy} (" in text and f"a copy of {test_img.path} (test, good)" in text
    assert (
        f"warning: inspection {reshot} (" in text
        and f"is labelled bad but its duplicate {test_img.path} is good" in text
    )
    assert [r.split for r in Manifest.read(ds).records] == [*(r.split for r in old.records), "test"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from-log", "LOG", "--out", "OUT"], "--from-log needs --images DIR"),
        (["--from-log", "LOG", "--images", "STORE"], "--out DIR is required"),
        (["--from-log", "LOG", "--images", "STORE", "--out", "OUT", "--add-class"], "only applies with --merge-into"),
        (["parts", "--from-log", "LOG", "--images", "STORE", "--out", "OUT"], "not both"),
        (["--out", "OUT"], "give a source folder, CSV file or 'elpv', or --from-log LOG"),
    ],
)
def test_bad_arguments_are_refused_by_name(log_dir, capsys, args, says):
    where = {"LOG": log_dir / "log.sqlite", "STORE": log_dir / "store", "OUT": log_dir / "ds"}
    assert main(["data", "import", *(str(where.get(a, a)) for a in args)]) == 2
    assert says in capsys.readouterr().err


def test_a_class_the_dataset_lacks_is_refused_by_the_command(log_dir, capsys):
    (log_dir / "parts" / "good").mkdir(parents=True)
    (log_dir / "parts" / "bad").mkdir(parents=True)
    (log_dir / "parts" / "good" / "a.png").write_bytes(png(60))
    (log_dir / "parts" / "bad" / "b.png").write_bytes(png(61))
    ds = log_dir / "ds"
    assert main(["data", "import", str(log_dir / "parts"), "--out", str(ds)]) == 0
    args = ["data", "import", "--from-log", str(log_dir / "log.sqlite"), "--images", str(log_dir / "store")]
    assert main([*args, "--merge-into", str(ds)]) == 2
    err = capsys.readouterr().err
    assert "'defect' (1 image(s)), 'ok' (1 image(s))" in err and "--map SRC=DST" in err
    assert main([*args, "--merge-into", str(ds), "--map", "defect=bad", "--map", "ok=good"]) == 0
    assert sorted(r.label for r in Manifest.read(ds).records) == ["bad", "bad", "good", "good"]
