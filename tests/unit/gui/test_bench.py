"""The Inspector at the bench (#33), without a display: the log it reopens, verdicts on an image's one row,
verdicts that cannot be written said (and never written on the caller's thread), the threshold kept per
model and said when it is not the model's, a reset that stays reset, a 16-bit image shown as such."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.core.errors import DefectlensError
from defectlens.gui import settings
from defectlens.gui.app import Event, Inspector
from defectlens.inspections import Filters, InspectionLog
from tests.require import import_or_missing


def opened(app: Inspector, model: Path, folder: Path) -> list[Event]:
    app.open_source(folder)
    app.open_model(model)
    events = app.wait()
    assert app.model is not None and all(item.scored for item in app.session.items)
    return events


def readable(app: Inspector) -> list[int]:
    return [int(i) for i in np.flatnonzero(app.session.usable)]


def give(app: Inspector, index: int, verdict: str, **kw) -> list[Event]:
    """A verdict on image ``index``; the events the log's thread answered with."""
    app.session.go_to(index)
    app.record_verdict(verdict, **kw)
    return [e for e in app.wait() if e.kind.startswith("verdict")]


def other(app: Inspector, index: int) -> str:
    shown = app.session.view(index).prediction
    return next(c for c in app.session.class_names if c != shown)


def test_relaunched_without_db_it_reopens_the_last_log_and_shows_earlier_verdicts(bundle, labelled_folder, tmp_path):
    log_path = tmp_path / "line3" / "verdicts.sqlite"
    first = Inspector(db=log_path, seed=0, batch_size=4)
    opened(first, bundle, labelled_folder)
    given = {}
    for n, i in enumerate(readable(first)):  # every readable image, confirmed and overridden in turn
        if n % 2:
            assert [e.kind for e in give(first, i, "overridden", label=other(first, i))] == ["verdict"]
            given[first.session.items[i].path] = ("overridden", other(first, i))
        else:
            assert [e.kind for e in give(first, i, "confirmed", comment=f"part {n}")] == ["verdict"]
            given[first.session.items[i].path] = ("confirmed", first.session.view(i).prediction)
    first.save_settings()
    first.close()
    assert not settings.default_db_path().exists()

    again = Inspector(seed=0, batch_size=4)  # no --db: the log the settings name
    assert again.db_path == log_path and "settings" in again.db_origin
    again.start()
    events = again.wait()
    assert f"{len(given)} earlier verdicts" in " ".join(e.text for e in events if e.kind == "history")
    shown = {item.path: (item.verdict, item.verdict_label) for item in again.session.items if item.verdict}
    assert shown == given
    # judging the same images again adds to each one's history on its row: no second, contradicting row
    for i in readable(again):
        assert [e.kind for e in give(again, i, "overridden", label=other(again, i))] == ["verdict"]
    assert again.log.count() == len(given) == again.log.count(Filters(verdict="overridden"))
    for item in again.session.items:
        if item.inspection_id is not None:
            assert len(again.log.verdicts(item.inspection_id)) == 2
    again.close()


def test_a_remembered_log_that_is_gone_falls_back_to_the_default_and_says_so(tmp_path):
    settings.save_settings(settings.Settings(last_db=str(tmp_path / "gone.sqlite")))
    app = Inspector()
    try:
        assert app.db_path == settings.default_db_path() and "gone" in app.db_origin
        assert any("gone.sqlite" in note and "no longer exists" in note for note in app.notices)
    finally:
        app.close()


def _locked(log_path: Path, image: Path) -> sqlite3.Connection:
    """Another program holding the log's write lock."""
    other = sqlite3.connect(log_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def _refusing(log_path: Path, image: Path) -> sqlite3.Connection:
    """A log that refuses every write (as a read-only or full one does; root ignores file modes)."""
    other = sqlite3.connect(log_path, isolation_level=None)
    for event in ("INSERT", "UPDATE"):
        other.execute(
            f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON inspections "
            "BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END"
        )
    return other


@pytest.mark.parametrize(
    ("make", "undo", "said"),
    [
        (_locked, lambda con: con.execute("ROLLBACK"), "locked by another program"),
        (
            _refusing,
            lambda con: con.executescript("DROP TRIGGER refuse_insert; DROP TRIGGER refuse_update;"),
            "read-only",
        ),
    ],
    ids=["locked", "read-only"],
)
def test_a_verdict_the_log_refuses_is_said_and_the_next_one_is_saved(
    make, undo, said, bundle, labelled_folder, tmp_path
):
    app = Inspector(db=tmp_path / "log.sqlite", seed=0, batch_size=4)
    opened(app, bundle, labelled_folder)
    i = readable(app)[0]
    app.session.go_to(i)
    blocker = make(tmp_path / "log.sqlite", app.session.items[i].path)
    app.record_verdict("confirmed")  # returns at once: the write waits on the log's thread, not here
    item = app.session.items[i]
    assert item.saving and item.inspection_id is None
    events = [e for e in app.wait() if e.kind.startswith("verdict")]
    assert [e.kind for e in events] == ["verdict_error"]
    assert said in events[0].text and "NOT saved" in events[0].text and events[0].note == events[0].text
    assert not item.saving and said in item.unsaved and item.verdict is None
    undo(blocker)
    blocker.close()
    assert [e.kind for e in give(app, i, "confirmed")] == ["verdict"]  # the log's thread carries on
    assert item.verdict == "confirmed" and item.unsaved == "" and app.log.count() == 1
    app.close()


def test_a_verdict_on_an_image_deleted_since_is_refused_with_the_reason(bundle, labelled_folder, tmp_path):
    app = Inspector(db=tmp_path / "log.sqlite", seed=0, batch_size=4)
    opened(app, bundle, labelled_folder)
    for i in readable(app)[:3]:
        app.session.go_to(i)
        app.session.items[i].path.unlink()
        with pytest.raises(DefectlensError, match=r"verdict NOT saved: .* cannot be read any more"):
            app.record_verdict("confirmed")
        assert app.session.items[i].verdict is None and not app.session.items[i].saving
    assert app.wait() == [] and app.log.count() == 0
    app.close()


def test_the_threshold_is_remembered_per_model_and_one_not_the_models_is_said(
    bundle, constant_bundle, labelled_folder, tmp_path
):
    second = constant_bundle("defect_last")  # validated at 0.3; the bundle fixture at 0.5
    app = Inspector(db=tmp_path / "log.sqlite", seed=0, batch_size=4)
    chosen = {bundle: 0.62, second: 0.2}
    for model, threshold in chosen.items():
        opened(app, model, labelled_folder)
        assert app.threshold_note() == ""  # the model's own at first
        app.set_threshold(threshold)
        app.save_settings()
    app.close()
    stored = settings.load_settings()[0].thresholds
    assert sorted(v["threshold"] for v in stored.values()) == [0.2, 0.62]

    again = Inspector(db=tmp_path / "log.sqlite", seed=0, batch_size=4)
    for model, threshold in chosen.items():
        events = opened(again, model, labelled_folder)
        assert again.session.threshold == threshold
        validated = again.model.validated_threshold
        note = next(e.note for e in events if e.kind == "model")
        assert f"threshold {threshold:.3f} on p(defect) (the model's validated: {validated:.3f} on p(defect))" in note
        assert "restored from your settings" in note
    again.restore_validated()  # back at the model's own: nothing kept for it, nothing said at the next start
    again.save_settings()
    assert again.threshold_note() == "" and len(settings.load_settings()[0].thresholds) == 1
    again.close()


def test_an_older_settings_files_single_threshold_still_applies_to_its_model(bundle, labelled_folder, tmp_path):
    settings.save_settings(settings.Settings(last_model=str(bundle), threshold=0.41, positive_class="defect"))
    app = Inspector(db=tmp_path / "log.sqlite")
    events = opened(app, bundle, labelled_folder)
    assert app.session.threshold == 0.41 and "0.410" in next(e.note for e in events if e.kind == "model")
    app.close()


def test_reset_settings_is_not_undone_on_close(bundle, labelled_folder, tmp_path):
    app = Inspector(db=tmp_path / "log.sqlite", seed=0)
    opened(app, bundle, labelled_folder)
    app.set_threshold(0.7)
    app.save_settings(geometry="1000x700+0+0")
    assert settings.settings_path().is_file()
    app.reset_settings()
    app.save_settings(geometry="1000x700+0+0")  # what closing the window does
    assert not settings.settings_path().exists()
    app.set_threshold(0.6)  # a change after the reset is the operator's: remembered again
    app.save_settings()
    assert settings.load_settings()[0].last_model == str(bundle)
    app.close()


def test_settings_keep_each_models_operating_point():
    saved = settings.Settings().with_operating_point("abc", (0.62, "defect")).with_operating_point("def", (0.1, None))
    settings.save_settings(saved)
    loaded, warning = settings.load_settings()
    assert warning is None and loaded == saved
    assert loaded.operating_point("abc") == (0.62, "defect") and loaded.operating_point("zzz") is None
    assert loaded.with_operating_point("abc", None).thresholds == {"def": {"threshold": 0.1, "positive_class": None}}


@pytest.mark.parametrize(
    "entry", ["0.5", {"threshold": 7}, {"threshold": "x"}, {"threshold": True}, {"positive_class": 3}]
)
def test_a_malformed_operating_point_is_dropped_with_a_note(entry):
    path = settings.settings_path()
    path.parent.mkdir(parents=True)
    path.write_text(f'{{"thresholds": {{"m": {__import__("json").dumps(entry)}, "n": {{"threshold": 0.4}}}}}}')
    loaded, warning = settings.load_settings()
    assert loaded.operating_point("m") is None and loaded.operating_point("n") == (0.4, None)
    assert warning is not None and "thresholds['m']" in warning


@pytest.mark.parametrize("depth", [16, 12, 8])
def test_a_wide_image_is_scaled_for_display_not_clipped_white(depth):
    import_or_missing("tkinter", flag="UI_TESTS", reason="the display helpers need Tk")
    from defectlens.gui.panels import fit

    rng = np.random.default_rng(depth)
    peak = 65535 if depth > 8 else 255
    values = rng.integers(0, peak // 2, (40, 60)).astype(np.uint16 if depth > 8 else np.uint8)
    shown = np.asarray(fit(Image.fromarray(values), (120, 80)).convert("L"), dtype=np.float64)
    assert shown.shape == (80, 120)
    assert shown.max() < 140 and abs(shown.mean() - values.mean() / peak * 255) < 3  # as the model sees it


def test_the_log_is_never_touched_on_the_callers_thread(bundle, labelled_folder, tmp_path, monkeypatch):
    import threading

    touched: set[str] = set()
    for name in ("record", "set_verdict", "query", "get"):
        real = getattr(InspectionLog, name)

        def spy(self, *a, _real=real, **kw):
            touched.add(threading.current_thread().name)
            return _real(self, *a, **kw)

        monkeypatch.setattr(InspectionLog, name, spy)
    app = Inspector(db=tmp_path / "log.sqlite", seed=0, batch_size=4)
    opened(app, bundle, labelled_folder)
    for i in readable(app):
        app.session.go_to(i)
        app.record_verdict("confirmed")
    app.wait()
    assert touched == {"inspector-log"}
    app.close()


@pytest.mark.parametrize(
    ("saved", "screen", "expected"),
    [
        (None, (1024, 600), "1024x600+0+0"),
        (None, (1920, 1080), "1280x860+0+0"),
        ("1000x700+5+6", (1920, 1080), "1000x700+5+6"),
        ("2560x1400+1920+0", (1024, 600), "1024x600+0+0"),
        ("1280x900-10+-20", (1024, 768), "1024x768+0+0"),
        ("not a geometry", (800, 600), "800x600+0+0"),
    ],
)
def test_the_window_never_opens_larger_than_the_screen(saved, screen, expected):
    view = import_or_missing("defectlens.gui.view", flag="UI_TESTS", reason="the window needs Tk")
    assert view.fit_geometry(saved, *screen) == expected
