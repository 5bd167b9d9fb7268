"""The QA Inspector at the bench (#33), as a real Tk window on a 1024x600 Xvfb screen (a line PC's): keys
typed into a file dialog or the advanced panel are text, never a verdict; a click on the threshold's track
steps, and a threshold off the model's is shown; a verdict the log refuses is shown while the window keeps
answering; every control is reachable; nothing moves when a note appears; a 16-bit image is shown as its
grey levels; notices stay until dismissed; the advanced panel applied unchanged overrides nothing; a reset
stays reset.

Skips when Xvfb or Tk is missing, unless DEFECTLENS_REQUIRE_UI_TESTS=1 (CI), where that fails. Set
DEFECTLENS_UI_SCREENSHOTS=DIR to keep the screenshots in DIR as well as in each test's temporary folder.
"""

from __future__ import annotations

import csv
import gc
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import draw_part
from tests.integration.test_inspector_xvfb import (
    _screenshot,
    _tk_garbage_dies_on_the_main_thread,  # noqa: F401 (an autouse fixture, used by being here)
    pump,
    xvfb,
)

#: The keys the window binds as shortcuts, as typed.
SHORTCUTS = ("<KeyPress-c>", "<KeyPress-o>", "<KeyPress-g>", "<space>", "<Left>", "<Right>")


@pytest.fixture(scope="module")
def small_display() -> str:
    """A 1024x600 screen, the size of the line PCs the inspector runs on."""
    return xvfb("1024x600")


@pytest.fixture
def parts(tmp_path: Path) -> Path:
    """``ok/`` and ``defect/`` with 3 parts each, and ``ok/wide16.png``: a good part saved as 16-bit grey."""
    rng = np.random.default_rng(5)
    for label in ("ok", "defect"):
        (tmp_path / "parts" / label).mkdir(parents=True)
        for i in range(3):
            draw_part(rng, label == "defect").save(tmp_path / "parts" / label / f"{label}_{i}.png")
    part = np.asarray(draw_part(rng, False, size=96), dtype=np.uint16) * 257  # 8-bit grey v is 16-bit v * 257
    Image.fromarray(part).save(tmp_path / "parts" / "ok" / "wide16.png")
    assert Image.open(tmp_path / "parts" / "ok" / "wide16.png").mode == "I;16"
    return tmp_path / "parts"


@pytest.fixture
def windows(small_display, tmp_path, monkeypatch) -> Iterator[Callable[..., object]]:
    """``windows(**inspector_kw)``: an inspector window on the 1024x600 screen, with the real file dialogs;
    every one is closed at the end."""
    monkeypatch.setenv("DISPLAY", small_display)
    monkeypatch.setenv("DEFECTLENS_CONFIG_DIR", str(tmp_path / "config"))
    from defectlens.gui.app import Inspector
    from defectlens.gui.launch import create_root
    from defectlens.gui.view import InspectorWindow

    made = []

    def make(**kw):
        kw.setdefault("db", tmp_path / "log.sqlite")
        win = InspectorWindow(create_root(), Inspector(seed=0, **kw))
        made.append(win)
        return win

    yield make
    for win in made:
        win.close()  # a no-op for one the test closed
    made.clear()
    # the closed windows' Tk variables die here, on the main thread: collected on a later test's loading or
    # log thread, each one's __del__ would wait for a Tk main loop that never runs there
    gc.collect()


def loaded(win, bundle: Path, folder: Path):
    win.app.start(model=bundle, folder=folder)
    win.refresh()
    pump(win, lambda: win.app.model is not None and not win.app.busy)
    return win


def logged(win) -> int:
    """Rows in the window's log, once the log's thread has done all it was given."""
    pump(win, lambda: not win.app.busy)
    return win.app.log.count()


def keys_into(win, widget: str) -> None:
    """Every shortcut key typed into ``widget`` (a Tk path: also the file dialog's own widgets)."""
    for key in SHORTCUTS:
        win.root.tk.call("event", "generate", widget, key, "-when", "now")
    win.root.update()


def screenshot(win, path: Path) -> Image.Image:
    win.root.update()
    return _screenshot(win, path)


def test_keys_typed_into_a_file_dialog_or_the_advanced_panel_record_nothing(windows, bundle, parts, tmp_path):
    win = loaded(windows(), bundle, parts)
    app, before = win.app, win.app.session.position
    typed: list[str] = []

    def type_into_the_dialog() -> None:  # runs inside the dialog's own event loop
        if not win.root.tk.call("winfo", "exists", ".__tk_filedialog"):
            win.root.after(50, type_into_the_dialog)
            return
        try:
            field = str(win.root.tk.call("focus"))
            keys_into(win, field)
            keys_into(win, ".__tk_filedialog")
            if shutil.which("xdotool"):  # real key presses through the X server, to the dialog's focused field
                subprocess.run(["xdotool", "type", "--delay", "30", "cog "], env=os.environ, check=True, timeout=30)
                win.root.update()
            typed.append(str(win.root.tk.call(field, "get")))
            win.root.tk.call(field, "delete", 0, "end")
            win.root.tk.call(field, "insert", 0, str(tmp_path / "typed.csv"))
            win.root.tk.call("event", "generate", field, "<Return>")
        finally:  # whatever happened above, the dialog ends (its answer is what the test then checks)
            if win.root.tk.call("winfo", "exists", ".__tk_filedialog"):
                win.root.tk.call("set", "::tk::Priv(selectFilePath)", str(tmp_path / "typed.csv"))

    win.root.after(50, type_into_the_dialog)
    win.buttons["Export CSV..."].invoke()  # the real Tk save dialog, until <Return> above
    assert typed and typed[0].startswith("cog ")  # the keys went into the file name, as text
    with (tmp_path / "typed.csv").open(encoding="utf-8") as fh:
        assert {row["verdict"] for row in csv.DictReader(fh)} == {""}

    win.buttons["Advanced..."].invoke()
    panel = win.panel
    fields = [w for w in _descendants(panel) if w.winfo_class() in ("TEntry", "TCheckbutton", "TCombobox")]
    assert len(fields) >= 6
    for widget in [*fields, panel]:
        widget.focus_force()
        win.root.update()
        keys_into(win, str(widget))
    panel.buttons["Cancel"].invoke()
    win.comment.focus_force()
    keys_into(win, str(win.comment))

    assert logged(win) == 0 and all(item.verdict is None for item in app.session.items)
    assert app.session.position == before and not win.gradcam.get()
    win.canvas.focus_force()  # the image view has the focus: the same keys are shortcuts
    keys_into(win, str(win.canvas))
    assert logged(win) == 1 and win.gradcam.get()  # c confirmed the image, o overrode it on its row, g: Grad-CAM
    row = app.log.query()[0]
    assert [v.verdict for v in app.log.verdicts(row.id)] == ["confirmed", "overridden"]


def _descendants(widget) -> list:
    out = []
    for child in widget.winfo_children():
        out += [child, *_descendants(child)]
    return out


def click_track(win, fraction: float) -> None:
    """A click on the threshold slider's track at ``fraction`` of its length (away from the handle)."""
    scale = win.scale
    x, y = round(fraction * (scale.winfo_width() - 1)), scale.winfo_height() // 2
    assert "slider" not in scale.identify(x, y)
    scale.event_generate("<Button-1>", x=x, y=y)
    scale.event_generate("<ButtonRelease-1>", x=x, y=y)
    win.root.update()


def test_a_click_on_the_track_steps_and_a_threshold_off_the_models_is_shown(windows, bundle, parts, tmp_path):
    win = loaded(windows(), bundle, parts)
    s = win.app.session
    assert s.threshold == 0.5 and win.text["threshold_note"].get() == "the model's validated threshold"
    assert str(win.restore.cget("state")) == "disabled"
    expected = 0.5
    for fraction, clicks in ((0.99, 3), (0.01, 5), (0.8, 1)):
        for _ in range(clicks):
            click_track(win, fraction)
            expected = round(expected + (0.01 if fraction > s.threshold else -0.01), 3)
            assert s.threshold == pytest.approx(expected)  # one small step per click, never a jump to an end
    note = win.text["threshold_note"].get()
    assert note == f"threshold {expected:.3f} on p(defect) (the model's validated: 0.500 on p(defect)): not the model's"
    assert win.threshold_label.cget("foreground") == "#b26a00"  # amber
    assert win.restore.cget("text") == "Back to the model's (0.500)" and str(win.restore.cget("state")) == "normal"
    screenshot(win, tmp_path / "bench_threshold_off.png")
    win.restore.invoke()
    assert s.threshold == 0.5 and win.text["threshold_note"].get() == "the model's validated threshold"

    win.entry.focus_force()
    win.entry.delete(0, "end")
    win.entry.insert(0, "0.62")
    win.entry.event_generate("<Return>")
    win.canvas.event_generate("<KeyPress-c>")  # the focus went back to the image: a verdict on the first part
    pump(win, lambda: "saved in" in win.text["message"].get())
    win.close()  # remembered for this model, and the log it wrote to
    again = loaded(windows(db=None), bundle, parts)  # started again without --db
    assert again.app.session.threshold == 0.62
    pump(again, lambda: "verdict: confirmed" in again.text["details"].get())  # the earlier verdict, from the log
    log_line = again.text["log"].get()
    assert log_line == f"inspection log: {tmp_path / 'log.sqlite'} (the last one used, from the settings)"
    pump(again, lambda: "restored from your settings" in again.text["alert"].get())
    assert "threshold 0.620 on p(defect) (the model's validated: 0.500 on p(defect))" in again.text["alert"].get()
    screenshot(again, tmp_path / "bench_threshold_restored.png")


def test_a_verdict_the_log_cannot_take_is_shown_and_the_window_keeps_answering(windows, bundle, parts, tmp_path):
    win = loaded(windows(), bundle, parts)
    holder = sqlite3.connect(tmp_path / "log.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the log's write lock
    ticks: list[int] = []

    def heartbeat() -> None:
        ticks.append(1)
        win.root.after(20, heartbeat)

    win.canvas.focus_force()
    win.canvas.event_generate("<KeyPress-c>")
    heartbeat()  # the event loop's ticks from here until the log's thread gives up on the lock
    pump(win, lambda: "NOT saved" in win.text["alert"].get())
    assert len(ticks) > 3  # the window went on answering while the write waited
    assert "locked by another program" in win.text["alert"].get()
    assert "last verdict NOT saved" in win.text["details"].get()
    screenshot(win, tmp_path / "bench_verdict_not_saved.png")
    holder.execute("ROLLBACK")
    holder.close()
    win.canvas.event_generate("<KeyPress-c>")
    pump(win, lambda: "saved in" in win.text["message"].get())
    assert "verdict: confirmed" in win.text["details"].get() and "NOT saved" not in win.text["details"].get()
    assert "NOT saved" in win.text["alert"].get()  # the notice stays until the operator dismisses it
    win.dismiss.invoke()
    assert win.text["alert"].get() == "" and logged(win) == 1


def controls(win) -> dict[str, object]:
    named = {f"button {k}": b for k, b in win.buttons.items()}
    named |= {f"filter {k}": r for k, r in win.filters.items()}
    named |= {"slider": win.scale, "threshold": win.entry, "positive class": win.positive}
    named |= {"override to": win.override_to, "comment": win.comment, "Grad-CAM": win.gradcam_box}
    named |= {"back to the model's": win.restore, "dismiss": win.dismiss, "image": win.canvas}
    return named


def test_every_control_is_reachable_at_1024x600(windows, bundle, parts, tmp_path):
    win = loaded(windows(), bundle, parts)
    root = win.root
    assert (root.winfo_width(), root.winfo_height()) == (1024, 600)
    screenshot(win, tmp_path / "bench_1024x600.png")
    left, top = root.winfo_rootx(), root.winfo_rooty()
    for name, widget in controls(win).items():
        if str(widget).startswith(str(win.side.inner)):
            win.side.reveal(widget)  # the side panel scrolls (mouse wheel, scroll bar, or focus)
        root.update()
        x, y = widget.winfo_rootx() - left, widget.winfo_rooty() - top
        w, h = widget.winfo_width(), widget.winfo_height()
        assert w > 1 and h > 1 and widget.winfo_viewable(), name
        assert x >= 0 and x + w <= 1024 and y >= 0 and y + h <= 600, (name, x, y, w, h)
        if str(widget).startswith(str(win.side.inner)):
            view = win.side.canvas
            assert view.winfo_rooty() <= widget.winfo_rooty(), name
            assert widget.winfo_rooty() + h <= view.winfo_rooty() + view.winfo_height(), name
    win.side.canvas.yview_moveto(0)
    for _ in range(30):  # the mouse wheel, over any part of the side panel, scrolls it
        win.buttons["Confirm (c)"].event_generate("<Button-5>")
    root.update()
    assert win.side.canvas.yview()[1] == 1.0  # down to its end
    win.side.reveal(win.buttons["Next >"])  # the bottom of the side panel, scrolled into view
    screenshot(win, tmp_path / "bench_1024x600_scrolled.png")


def test_nothing_moves_when_a_note_appears(windows, bundle, parts):
    win = loaded(windows(), bundle, parts)

    def places() -> dict[str, tuple[int, int]]:
        win.root.update()
        return {k: (w.winfo_rootx(), w.winfo_rooty()) for k, w in controls(win).items()}

    before = places()
    win.canvas.focus_force()
    win.canvas.event_generate("<KeyPress-c>")  # a verdict line in the details
    pump(win, lambda: "verdict: confirmed" in win.text["details"].get())
    assert places() == before
    win.canvas.event_generate("<KeyPress-g>")  # the Grad-CAM note
    pump(win, lambda: win.text["gradcam_note"].get() != "")
    assert places() == before
    win.alert("a notice the operator must read, long enough to take the two lines kept for it " * 3)
    assert places() == before
    win.message("a long status message " * 20, error=True)
    assert places() == before


def test_a_16_bit_png_is_shown_as_its_grey_levels(windows, bundle, parts, tmp_path):
    win = loaded(windows(), bundle, parts)
    s = win.app.session
    s.go_to(next(i for i, item in enumerate(s.items) if item.path.name == "wide16.png"))
    win.refresh_item()
    shot = screenshot(win, tmp_path / "bench_16bit.png")
    c = win.canvas
    cx = c.winfo_rootx() - win.root.winfo_rootx() + c.winfo_width() // 2
    cy = c.winfo_rooty() - win.root.winfo_rooty() + c.winfo_height() // 2
    grey = np.asarray(shot.convert("L"), dtype=np.float64)
    centre = grey[cy - 20 : cy + 20, cx - 20 : cx + 20]  # inside the part's disc: grey 170 in 8 bits
    assert abs(centre.mean() - 170) < 20, centre.mean()
    side = min(c.winfo_width(), c.winfo_height())
    corner = grey[cy - side // 2 + 4 : cy - side // 2 + 14, cx - side // 2 + 4 : cx - side // 2 + 14]
    assert corner.mean() < 80, corner.mean()  # the dark background around the part, not white


def test_the_corrupt_settings_warning_stays_until_dismissed(windows, bundle, parts, tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "inspector.json").write_text("{ not json", encoding="utf-8")
    win = loaded(windows(), bundle, parts)
    win.canvas.focus_force()
    for key in ("<Right>", "<Right>", "<KeyPress-c>"):
        win.canvas.event_generate(key)
    pump(win, lambda: "saved in" in win.text["message"].get())  # the message line has moved on, twice
    assert "is corrupt" in win.text["alert"].get() and "moved to" in win.text["alert"].get()
    screenshot(win, tmp_path / "bench_corrupt_settings.png")
    win.dismiss.invoke()
    assert win.text["alert"].get() == ""


@pytest.mark.parametrize(
    ("channels", "mean", "std"),
    [(1, (0.59123456,), (0.2345678,)), (3, (0.48512345, 0.4561, 0.40600001), (0.229, 0.22412345, 0.2250000001))],
)
def test_the_advanced_panel_applied_unchanged_overrides_nothing(windows, bundle, parts, channels, mean, std):
    from defectlens.core.spec import ModelSpec
    from defectlens.gui import model as model_module
    from defectlens.gui.panels import AdvancedPanel, Dialogs

    win = windows()
    spec = ModelSpec(arch="x", in_channels=channels, input_size=40, mean=mean, std=std, class_names=("ok", "bad"))
    applied: list = []
    # both panels kept to the end: their Tk variables then die on this thread (see the windows fixture)
    panels = [AdvancedPanel(win.root, spec=spec, advanced=None, on_apply=applied.append, dialogs=Dialogs(win.root))]
    panels[0].buttons["Apply"].invoke()
    assert model_module._changed(spec, model_module.apply_advanced(spec, applied[0])) == ()
    panels.append(AdvancedPanel(win.root, spec=spec, advanced=None, on_apply=applied.append, dialogs=Dialogs(win.root)))
    panels[1].vars["size"].set("64")  # a field changed is an override; the others stay the model's
    panels[1].buttons["Apply"].invoke()
    assert model_module._changed(spec, model_module.apply_advanced(spec, applied[1])) == ("input_size",)

    loaded(win, bundle, parts)
    win.buttons["Advanced..."].invoke()
    win.panel.buttons["Apply"].invoke()
    pump(win, lambda: not win.app.busy and win.app.model is not None)
    assert win.app.model.overridden == () and "OVERRIDDEN" not in win.text["model"].get()


def test_reset_settings_is_not_undone_by_closing_the_window(windows, bundle, parts, tmp_path):
    win = loaded(windows(), bundle, parts)
    settings_file = tmp_path / "config" / "inspector.json"
    assert settings_file.is_file()
    win.buttons["Reset settings"].invoke()
    win.close()
    assert not settings_file.exists()
