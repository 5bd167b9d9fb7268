"""The inspector window (Tk): widgets bound to :class:`~defectlens.gui.app.Inspector`, nothing more.

Every decision, figure and record comes from the controller; this module lays out widgets, turns
clicks and keys into controller calls, and draws what :meth:`Inspector.poll` reports, from an
``after()`` loop so the window keeps answering while a folder is scored. Tk has no native drag and
drop, so images are opened with the Open buttons (or ``--folder``).
"""

from __future__ import annotations

import re
import tkinter as tk
from collections.abc import Callable
from pathlib import Path
from tkinter import ttk

from PIL import Image

from defectlens.core.errors import DefectlensError
from defectlens.gui.app import Inspector
from defectlens.gui.draw import IMAGE_BOX, NO_POSITIVE, Drawing
from defectlens.gui.model import Advanced
from defectlens.gui.panels import AdvancedPanel, Dialogs, ScrollFrame
from defectlens.gui.session import FILTERS

POLL_MS = 30
KEYS = "keys (on the image): Left/Right previous/next, space random, g Grad-CAM, c confirm, o override"
#: Width of the side panel in pixels (it scrolls when the window is not tall enough for it).
SIDE_WIDTH = 470
#: Where the window opens when the settings remember no geometry (shrunk to a smaller screen).
DEFAULT_SIZE = (1280, 860)
#: A trough click moves the threshold by this much (a drag moves it freely): never a jump to the end.
STEP = 0.01


class InspectorWindow(Drawing):
    """The main window; ``dialogs`` answers the file choosers (a test can pass its own)."""

    def __init__(self, root: tk.Tk, app: Inspector, *, dialogs: Dialogs | None = None):
        self.root, self.app = root, app
        self.dialogs = dialogs or Dialogs(root)
        names = ("status", "message", "model", "log", "alert", "decision", "details", "metrics", "threshold")
        more = ("positive", "filter", "override", "comment", "gradcam_note", "threshold_note")
        self.text = {k: tk.StringVar(root) for k in (*names, *more)}
        self.text["filter"].set("all")
        self.gradcam = tk.BooleanVar(root, value=False)
        self._images: dict[Path, Image.Image] = {}
        self.closed = False
        self.panel: AdvancedPanel | None = None  # the advanced panel opened last
        self.buttons: dict[str, ttk.Button] = {}  # by label, for keyboard-free tests and accessibility tools
        self._syncing, self._due = False, dict[str, str]()
        root.title("defectlens QA Inspector")
        root.geometry(fit_geometry(app.settings.geometry, root.winfo_screenwidth(), root.winfo_screenheight()))
        self._build()
        self._bind_keys()
        root.protocol("WM_DELETE_WINDOW", self.close)
        self.text["log"].set(f"inspection log: {app.db_path} ({app.db_origin})")
        for notice in app.notices:
            self.alert(notice)
        self.canvas.focus_set()
        root.after(POLL_MS, self._poll)

    # -- layout ------------------------------------------------------------------------------------

    def _build(self) -> None:
        bar = ttk.Frame(self.root, padding=4)
        bar.pack(side="top", fill="x")
        for label, command in (("Open model...", self.open_model), ("Open run folder...", self.open_run),
                               ("Advanced...", self.open_advanced), ("Open image...", self.open_image),
                               ("Open folder...", self.open_folder), ("Export CSV...", self.export),
                               ("Reset settings", self.reset_settings)):  # fmt: skip
            self.buttons[label] = ttk.Button(bar, text=label, command=command, takefocus=False)
            self.buttons[label].pack(side="left", padx=2)
        ttk.Label(self.root, textvariable=self.text["model"], padding=(8, 0)).pack(side="top", fill="x")
        ttk.Label(self.root, textvariable=self.text["log"], padding=(8, 0), foreground="gray30").pack(
            side="top", fill="x"
        )
        self._build_operating_point()
        self._build_alert()
        status = ttk.Frame(self.root, padding=4)
        status.pack(side="bottom", fill="x")
        self.progress = ttk.Progressbar(status, length=200, maximum=1)
        self.progress.pack(side="right")
        ttk.Label(status, textvariable=self.text["status"]).pack(side="top", anchor="w")
        self.message_label = ttk.Label(status, textvariable=self.text["message"])
        self.message_label.pack(side="top", anchor="w")
        self.side = ScrollFrame(self.root, width=SIDE_WIDTH)
        self.side.pack(side="right", fill="y")
        # packed last, so the image is what shrinks on a small screen; it is redrawn at the size it gets
        self.canvas = tk.Canvas(self.root, width=IMAGE_BOX[0], height=IMAGE_BOX[1], background="#202020",
                                highlightthickness=0, takefocus=True)  # fmt: skip
        self.canvas.pack(side="left", fill="both", expand=True, padx=8, pady=8)
        self.canvas.bind("<Button-1>", lambda _e: self.canvas.focus_set())
        self.canvas.bind("<Configure>", lambda _e: self._schedule("resize", 50, self._resized))
        side = self.side.inner
        self._build_result(side)
        self._build_verdict(side)  # next to the decision it judges: in view on a 600-pixel screen
        self._build_threshold(side)
        self._build_browse(side)

    def _build_operating_point(self) -> None:
        """Whether the threshold in force is the model's validated one, always in view (amber when it is not),
        with the one click back to it."""
        box = ttk.Frame(self.root, padding=(8, 0))
        box.pack(side="top", fill="x")
        self.restore = ttk.Button(box, text="Back to the model's", command=self._on_restore, takefocus=False)
        self.restore.pack(side="right")
        self.threshold_label = tk.Label(box, textvariable=self.text["threshold_note"], anchor="w")
        self.threshold_label.pack(side="left", fill="x", expand=True)

    def _build_alert(self) -> None:
        """A notice the operator must read (a verdict not saved, a corrupt settings file, a threshold restored
        from the settings): it stays until dismissed. Its three lines are always there, so nothing jumps."""
        box = ttk.Frame(self.root, padding=(8, 0))
        box.pack(side="top", fill="x")
        self.dismiss = ttk.Button(box, text="Dismiss", command=self.dismiss_alert, takefocus=False, state="disabled")
        self.dismiss.pack(side="right")
        self.alert_label = tk.Label(box, textvariable=self.text["alert"], height=3, anchor="nw", justify="left",
                                    foreground="#b00020", wraplength=800)  # fmt: skip
        self.alert_label.pack(side="left", fill="x", expand=True)

    def _build_result(self, side: ttk.Frame) -> None:
        self.decision = tk.Label(side, textvariable=self.text["decision"], font=("TkDefaultFont", 22, "bold"),
                                 anchor="w", height=1)  # fmt: skip
        self.decision.pack(anchor="w", fill="x")
        # fixed heights: a line added (a verdict, a gate's flag, a note) never moves the panels below
        tk.Label(side, textvariable=self.text["details"], justify="left", anchor="nw", height=9,
                 wraplength=SIDE_WIDTH - 30).pack(anchor="w", fill="x")  # fmt: skip
        self.gradcam_box = ttk.Checkbutton(side, text="Grad-CAM overlay (g)", variable=self.gradcam,
                                           command=self._gradcam_changed, takefocus=False)  # fmt: skip
        self.gradcam_box.pack(anchor="w", pady=(4, 0))
        tk.Label(side, textvariable=self.text["gradcam_note"], foreground="gray40", wraplength=SIDE_WIDTH - 30,
                 height=2, anchor="nw", justify="left").pack(anchor="w", fill="x")  # fmt: skip

    def _build_threshold(self, side: ttk.Frame) -> None:
        box = ttk.LabelFrame(side, text="Decision", padding=6)
        box.pack(fill="x", pady=4)
        ttk.Label(box, text="Positive class").grid(row=0, column=0, sticky="w")
        self.positive = ttk.Combobox(box, textvariable=self.text["positive"], state="readonly", width=24)
        self.positive.grid(row=0, column=1, columnspan=2, sticky="w")
        self.positive.bind("<<ComboboxSelected>>", self._on_positive)
        ttk.Label(box, text="Threshold").grid(row=1, column=0, sticky="w")
        self.scale = ttk.Scale(box, from_=0.0, to=1.0, length=240, command=self._on_scale, takefocus=False)
        self.scale.grid(row=1, column=1, sticky="we")
        self.scale.bind("<Button-1>", self._on_trough)
        self.entry = ttk.Entry(box, textvariable=self.text["threshold"], width=7)
        self.entry.grid(row=1, column=2, padx=4)
        self.entry.bind("<Return>", self._on_entry)
        tk.Label(box, textvariable=self.text["metrics"], justify="left", anchor="nw", height=4).grid(
            row=2, column=0, columnspan=3, sticky="w"
        )

    def _build_browse(self, side: ttk.Frame) -> None:
        box = ttk.LabelFrame(side, text="Browse", padding=6)
        box.pack(fill="x", pady=4)
        self.filters: dict[str, ttk.Radiobutton] = {}
        for i, (key, label) in enumerate(FILTERS.items()):
            self.filters[key] = ttk.Radiobutton(box, text=label, value=key, variable=self.text["filter"],
                                                command=self._on_filter, takefocus=False)  # fmt: skip
            self.filters[key].grid(row=i // 2, column=i % 2, sticky="w")
        nav = ttk.Frame(box)
        nav.grid(row=3, column=0, columnspan=2, sticky="w", pady=(4, 0))
        for label, command in (("< Previous", self.prev), ("Random", self.random), ("Next >", self.next)):
            self.buttons[label] = ttk.Button(nav, text=label, command=command, takefocus=False)
            self.buttons[label].pack(side="left", padx=2)
        ttk.Label(box, text=KEYS, foreground="gray40", wraplength=SIDE_WIDTH - 40).grid(
            row=4, column=0, columnspan=2, sticky="w"
        )

    def _build_verdict(self, side: ttk.Frame) -> None:
        box = ttk.LabelFrame(side, text="Operator verdict", padding=6)
        box.pack(fill="x", pady=4)
        for column, (label, command) in enumerate((("Confirm (c)", self.confirm), ("Override (o) to", self.override))):
            self.buttons[label] = ttk.Button(box, text=label, command=command, takefocus=False)
            self.buttons[label].grid(row=0, column=column)
        self.override_to = ttk.Combobox(box, textvariable=self.text["override"], state="readonly", width=16)
        self.override_to.grid(row=0, column=2, padx=4)
        self.override_to.bind("<<ComboboxSelected>>", lambda _e: self.canvas.focus_set())
        ttk.Label(box, text="Comment").grid(row=1, column=0, sticky="w")
        self.comment = ttk.Entry(box, textvariable=self.text["comment"], width=36)
        self.comment.grid(row=1, column=1, columnspan=2, sticky="we", pady=2)
        self.comment.bind("<Escape>", lambda _e: self.canvas.focus_set())

    def _bind_keys(self) -> None:
        keys = {"<Left>": self.prev, "<Right>": self.next, "<space>": self.random, "<KeyPress-g>": self.toggle_gradcam,
                "<KeyPress-c>": self.confirm, "<KeyPress-o>": self.override}  # fmt: skip
        for sequence, action in keys.items():
            self.root.bind_all(sequence, self._shortcut(action))

    def _shortcut(self, action: Callable[[], None]) -> Callable[[tk.Event], None]:
        """A key handler running ``action`` only when the image (or the main window itself) has the focus:
        a key typed anywhere else (a field, a file dialog, the advanced panel, a button) is not a shortcut."""

        def handle(event: tk.Event) -> None:
            if event.widget is self.canvas or event.widget is self.root:
                action()

        return handle

    # -- actions -------------------------------------------------------------------------------------

    def open_model(self, path: str | None = None) -> None:
        path = path or self.dialogs.model()
        if path:
            self.message(self.app.open_model(path).text)

    def open_run(self) -> None:
        self.open_model(self.dialogs.model_folder())

    def open_advanced(self) -> None:
        model = self.app.model
        spec = model.panel_spec(self.app.advanced) if model is not None else None

        def apply(advanced: Advanced | None) -> None:
            target = model.path if model is not None else self.dialogs.model()
            if target:
                self.message(self.app.open_model(target, advanced=advanced).text)

        self.panel = AdvancedPanel(
            self.root, spec=spec, advanced=self.app.advanced, on_apply=apply, dialogs=self.dialogs
        )

    def open_image(self, path: str | None = None) -> None:
        self._open_source(path or self.dialogs.image())

    def open_folder(self, path: str | None = None) -> None:
        self._open_source(path or self.dialogs.folder())

    def _open_source(self, path: str) -> None:
        if not path:
            return
        try:
            self.app.open_source(path)
        except DefectlensError as exc:
            self.message(str(exc), error=True)
            return
        self.progress.configure(value=0, maximum=max(1, len(self.app.session.items)))
        self.text["filter"].set("all")
        self.refresh()

    def prev(self) -> None:
        self.app.session.go_prev()
        self.refresh_item()

    def next(self) -> None:
        self.app.session.go_next()
        self.refresh_item()

    def random(self) -> None:
        self.app.session.go_random()
        self.refresh_item()

    def _on_filter(self) -> None:
        self.app.session.set_filter(self.text["filter"].get())
        self.refresh_item()

    def toggle_gradcam(self) -> None:
        if self.app.gradcam_unavailable() is None:
            self.gradcam.set(not self.gradcam.get())
            self._gradcam_changed()

    def _gradcam_changed(self) -> None:
        if not self.gradcam.get():
            self.text["gradcam_note"].set("")
        self.refresh_item()

    def confirm(self) -> None:
        self._verdict("confirmed")

    def override(self) -> None:
        self._verdict("overridden", self.text["override"].get() or None)

    def _verdict(self, verdict: str, label: str | None = None) -> None:
        """Send the verdict to the log's thread; whether it was saved is drawn when it answers."""
        try:
            self.app.record_verdict(verdict, label=label, comment=self.text["comment"].get().strip())
        except DefectlensError as exc:
            self.message(str(exc), error=True)
            if "NOT saved" in str(exc):
                self.alert(str(exc))
            return
        self.text["comment"].set("")
        self.message("saving the verdict...")
        self.canvas.focus_set()  # the next image's keys work at once, also after typing a comment
        self.refresh_item()

    def export(self, path: str | None = None) -> None:
        path = path or self.dialogs.save_csv()
        if not path:
            return
        try:
            summary = self.app.export(path)
        except (DefectlensError, OSError) as exc:
            self.message(f"export failed: {exc}", error=True)
            return
        self.message(f"exported {path} and {summary.name}")

    def reset_settings(self) -> None:
        self.app.reset_settings()
        self.message(
            "settings reset to defaults: closing the window keeps them so (the open model and images stay until "
            "then; opening or changing something is remembered again)"
        )

    def close(self) -> None:
        """Save the settings (with the window geometry), close the log and the window."""
        if self.closed:
            return
        self.closed = True
        self.app.save_settings(geometry=self.root.geometry())
        self.app.close()
        self.root.destroy()

    # -- threshold -----------------------------------------------------------------------------------

    def _on_scale(self, value: str) -> None:
        if not self._syncing:
            self.set_threshold(round(float(value), 3))

    def _on_trough(self, event: tk.Event) -> str | None:
        """A click on the slider's track moves the threshold one :data:`STEP` towards it (ttk's own binding
        adds the whole range, 1.0: one click threw the threshold to an end); the handle still drags."""
        if "slider" in self.scale.identify(event.x, event.y):
            return None
        s = self.app.session
        if s.uses_threshold and s.threshold is not None:
            towards = float(self.scale.get(event.x, event.y))
            step = STEP if towards > s.threshold else -STEP
            self.set_threshold(round(min(1.0, max(0.0, s.threshold + step)), 3))
        return "break"

    def _on_entry(self, _event: tk.Event | None = None) -> None:
        try:
            self.set_threshold(float(self.text["threshold"].get()))
        except (ValueError, DefectlensError) as exc:
            self.message(f"threshold: {exc}", error=True)
            return
        self.canvas.focus_set()  # typed and entered: the keys are the image's shortcuts again

    def _on_positive(self, _event: tk.Event | None = None) -> None:
        name = self.text["positive"].get()
        self.app.set_positive_class(None if name == NO_POSITIVE else name)
        self.canvas.focus_set()
        self._threshold_changed()

    def _on_restore(self) -> None:
        try:
            self.app.restore_validated()
        except DefectlensError as exc:
            self.message(str(exc), error=True)
        self._threshold_changed()

    def set_threshold(self, value: float) -> None:
        """Move the operating threshold; the batch is re-labelled, no image is scored again."""
        self.app.set_threshold(value)
        self._threshold_changed()

    def _threshold_changed(self) -> None:
        self.sync_threshold()
        self.refresh_item()
        self._schedule("metrics", 60, self.refresh_metrics)
        self._schedule("save", 1000, lambda: self.app.save_settings(geometry=self.root.geometry()))

    def _schedule(self, slot: str, ms: int, action: Callable[[], None]) -> None:
        """Run ``action`` once, ``ms`` after the last request (a dragged slider asks many times)."""
        if self._due.get(slot):
            self.root.after_cancel(self._due[slot])

        def run() -> None:
            self._due.pop(slot, None)
            action()

        self._due[slot] = self.root.after(ms, run)

    # -- size ---------------------------------------------------------------------------

    def _resized(self) -> None:
        self._drawn = None  # the picture is fitted to the canvas's new size
        self.alert_label.configure(wraplength=max(200, self.root.winfo_width() - 120))
        self.refresh_item()

    # -- drawing -------------------------------------------------------------------------------------

    def _poll(self) -> None:
        try:
            for event in self.app.poll(limit=50):
                self.on_event(event)
        finally:
            self.root.after(POLL_MS, self._poll)


def fit_geometry(saved: str | None, screen_width: int, screen_height: int) -> str:
    """The window's geometry: the saved one, or the default, no larger than the screen (a window saved on a
    large monitor, or the default itself, would put the verdict panel off a 1024x600 line PC's screen)."""
    match = re.fullmatch(r"(\d+)x(\d+)([+-]-?\d+[+-]-?\d+)?", saved or "")
    width, height = (int(match[1]), int(match[2])) if match else DEFAULT_SIZE
    width, height = min(width, screen_width), min(height, screen_height)
    offset = match[3] if match and match[3] and (width, height) == (int(match[1]), int(match[2])) else "+0+0"
    return f"{width}x{height}{offset}"
