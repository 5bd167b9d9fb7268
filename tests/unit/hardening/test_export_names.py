"""Issue #33: export keeps class names as they are, never ships this machine's paths inside the ONNX
graph, never writes a bundle that no load accepts; and the report's plots take any class name.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from defectlens.core.bundle import read_bundle, write_bundle
from defectlens.core.errors import DefectlensError
from tests.helpers import make_checkpoint
from tests.unit.hardening import corpus as C

PATHLIKE_NAMES = [
    ("scratch (/dent)", "ok"),
    ("part /a", "part a"),
    ("/abs/path/class", "ok"),
    ("C:\\\\dent", "ok"),
    ("a/b", "a b"),
    ("ok", "see /home/ana/data/x"),
    ("\\\\server\\share", "ok"),
]


def _export(run: Path, out: Path):
    from defectlens.export import export_bundle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic-inputs warning
        return export_bundle(run, out)


@pytest.mark.slow
@pytest.mark.parametrize("names", PATHLIKE_NAMES, ids=str)
def test_export_keeps_class_names_that_look_like_paths(names, tmp_path):
    from defectlens.inference.predictor import Predictor

    run = make_checkpoint(tmp_path / "run", classes=names)
    result = _export(run, tmp_path / "m.dlens")
    assert tuple(result.meta["spec"]["class_names"]) == names
    assert read_bundle(result.path).spec.class_names == names
    predictor = Predictor.load(result.path)
    assert tuple(predictor.predict(C.noise()).probabilities) == names


def test_provenance_paths_are_cut_and_the_spec_kept():
    from defectlens.core.bundle import shipped_meta

    spec = {"class_names": ["scratch (/dent)", "/abs"], "arch": "simple_cnn"}
    meta = {"spec": spec, "training_config": {"data": "/home/ana/data/casting"}, "note": "from /srv/x/y.pt"}
    shipped = shipped_meta(meta)
    assert shipped["spec"] == spec
    assert shipped["training_config"] == {"data": "casting"} and shipped["note"] == "from y.pt"


@pytest.mark.parametrize("names", [["ok", "ok"], ["ok", "bad\x00"], ["", "ok"], ["ok"] * 3])
def test_a_bundle_no_load_would_accept_is_never_written(names, bundle, tmp_path):
    meta, members = C.bundle_parts(bundle)
    meta["spec"].update(class_names=names, positive_class=None, threshold=None)
    out = tmp_path / "never.dlens"
    with pytest.raises(DefectlensError, match="refused to export"):
        write_bundle(out, members=members, meta=meta)
    assert not out.exists() and not list(tmp_path.iterdir())


def _machine_paths() -> list[bytes]:
    import defectlens

    source = Path(defectlens.__file__).resolve().parents[1]
    found = {str(Path.home()), sys.prefix, sys.base_prefix, str(source), str(Path(sys.executable).parent)}
    return sorted(p.encode() for p in found if len(p) > 4)


@pytest.mark.parametrize("member", ["model.onnx", "spec.json"])
def test_no_machine_path_in_the_bundle(member, bundle):
    import zipfile

    data = zipfile.ZipFile(bundle).read(member)
    for path in _machine_paths():
        assert path not in data, (member, path)
    for word in (b"stack_trace", b"site-packages", b".venv", b'File "'):
        assert word not in data, (member, word)


def test_every_node_is_stripped(bundle):
    import onnx

    proto = onnx.load_from_string(C.bundle_parts(bundle)[1]["model.onnx"])
    assert proto.graph.node
    assert all(not n.doc_string and not list(n.metadata_props) for n in proto.graph.node)
    from defectlens.core.bundle import META_FORMAT_KEY, META_SPEC_KEY

    assert {p.key for p in proto.metadata_props} == {META_FORMAT_KEY, META_SPEC_KEY}
    assert not proto.doc_string and not proto.graph.doc_string


MATHTEXT = ["bad$^$", "$x_{", "a$b$c", r"\frac{$", "$$", "100$ dent", "%$#&_{}^~\\"]


@pytest.mark.parametrize("name", MATHTEXT)
def test_plots_take_class_names_with_mathtext_characters(name, tmp_path):
    from defectlens.reporting.plots import confusion_png, ranking_png

    names = ["ok", name]
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20)
    probs = np.stack([1 - p, p], axis=1)
    y = (rng.uniform(size=20) < 0.5).astype(int)
    assert confusion_png([[3, 1], [2, 4]], names, title=f"confusion {name}", path=tmp_path / "c.png")
    for kind in ("roc", "pr"):
        assert ranking_png(kind, y, probs, names, positive_index=1, title=name, threshold=0.5)
    assert (tmp_path / "c.png").stat().st_size > 0


@pytest.mark.slow
def test_evaluate_writes_its_report_for_mathtext_class_names(tmp_path):
    from defectlens.data.manifest import Manifest, Record
    from defectlens.workflows.evaluate import evaluate_run

    classes = ("ok$", "bad$^$")
    root = tmp_path / "images"
    records = []
    for label in classes:
        for i in range(6):
            rel = f"{label}/{i}.png"
            (root / label).mkdir(parents=True, exist_ok=True)
            C.noise((32, 32), seed=i + 10 * len(label)).save(root / rel)
            records.append(Record(path=rel, label=label, split="val" if i < 3 else "test", width=32, height=32,
                                  mode="L", group=rel))  # fmt: skip
    info = {"name": "dollars", "format": "folder", "root": str(root), "classes": sorted(classes),
            "positive_class": "bad$^$"}  # fmt: skip
    data = Manifest(records=records, info=info).write(tmp_path / "ds")
    run = make_checkpoint(tmp_path / "run", classes=tuple(sorted(classes)), positive="bad$^$")
    result = evaluate_run(run, data=data, out_dir=tmp_path / "eval", splits=("val", "test"))
    report = next((tmp_path / "eval").rglob("*.html"))
    assert report.stat().st_size > 0 and result is not None
