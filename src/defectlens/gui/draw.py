"""Drawing the inspector window's state: the image (or its Grad-CAM overlay), the decision, the figures.

:class:`Drawing` is the half of the window that reads the controller and writes widgets; the other
half (:mod:`defectlens.gui.view`) builds the widgets and turns input into controller calls. Drawing
never decides anything: labels, probabilities and metrics all come from the session.
"""

from __future__ import annotations

import time
import tkinter as tk
from pathlib import Path
from tkinter import ttk

from PIL import Image, ImageTk

from defectlens.core.errors import DefectlensError
from defectlens.data.images import load_image
from defectlens.gui.app import Event, Inspector
from defectlens.gui.panels import fit
from defectlens.gui.session import NOT_JUDGED, ItemView

IMAGE_BOX = (560, 560)
NO_POSITIVE = "(none: most probable class)"
METRICS_EVERY_S = 1.0  # while scoring, figures are recomputed at most this often
# "review": amber, a frame the gate would not let the model judge (neither a class's green or red, nor grey)
COLOURS = {"positive": "#c62828", "negative": "#2e7d32", "review": "#b26a00", "none": "gray40"}


class Drawing:
    """Draws the controller's state into the window's widgets (mixed into the window class)."""

    root: tk.Tk
    app: Inspector
    text: dict[str, tk.StringVar]
    gradcam: tk.BooleanVar
    canvas: tk.Canvas
    decision: tk.Label
    message_label: ttk.Label
    progress: ttk.Progressbar
    positive: ttk.Combobox
    override_to: ttk.Combobox
    restore: ttk.Button
    gradcam_box: ttk.Checkbutton
    scale: ttk.Scale
    entry: ttk.Entry
    threshold_label: tk.Label
    _syncing: bool

    dismiss: ttk.Button

    def alert(self, text: str) -> None:
        """Show ``text`` where it stays until the operator dismisses it (never overwritten by progress)."""
        self.text["alert"].set(text)
        self.dismiss.configure(state="normal")

    def dismiss_alert(self) -> None:
        self.text["alert"].set("")
        self.dismiss.configure(state="disabled")

    def message(self, text: str, *, error: bool = False) -> None:
        self.text["message"].set(text)
        self.message_label.configure(foreground="red" if error else "")

    def on_event(self, event: Event) -> None:
        """Draw what finished in the background."""
        if event.note:
            self.alert(event.note)
        if event.kind in ("verdict", "verdict_error", "history"):
            if event.text:
                self.message(event.text, error=event.kind == "verdict_error")
            if event.data is None or event.data == self.app.session.position:
                self.refresh_item()
        elif event.kind == "progress":
            done, total = event.data
            self.progress.configure(maximum=max(1, total), value=done)
            self.message(f"scoring {done}/{total} images...")
            if self._shown != self._state():
                self.refresh_item()
            if time.monotonic() - self._metrics_at > METRICS_EVERY_S:
                self.refresh_metrics()
        elif event.kind == "ready":
            self.refresh_metrics()
        elif event.kind == "metrics":
            self.draw_metrics()
        elif event.kind in ("model", "scored"):
            self.message(event.text)
            self.refresh()
        elif event.kind == "gradcam":
            if event.data == self.app.session.position:
                self.refresh_item()
        elif event.text:
            self.message(event.text, error=event.kind.endswith("error"))
            if event.kind == "model_error" and self.app.model is None:
                self.text["model"].set(event.text)

    def refresh(self) -> None:
        """Redraw everything (a model or a batch changed)."""
        model = self.app.model
        self.text["model"].set(
            f"model: {model.describe()}" if model else "no model: open a .dlens bundle, run or .onnx"
        )
        names = list(self.app.session.class_names)
        self.positive.configure(values=[*names, NO_POSITIVE] if len(names) == 2 else [NO_POSITIVE])
        self.override_to.configure(values=names)
        reason = self.app.gradcam_unavailable()
        self.gradcam_box.configure(state="disabled" if reason else "normal")
        if reason:
            self.gradcam.set(False)
        self.text["gradcam_note"].set(reason or "")
        s = self.app.session
        self.progress.configure(maximum=max(1, len(s.items)), value=s.scored)
        self.sync_threshold()
        self.refresh_item()
        self.refresh_metrics()

    def sync_threshold(self) -> None:
        """Put the session's threshold and positive class into the slider, entry and chooser."""
        s = self.app.session
        self._syncing = True
        try:
            self.scale.set(s.threshold if s.threshold is not None else 0.5)
        finally:
            self._syncing = False
        self.text["threshold"].set("" if s.threshold is None else f"{s.threshold:.3f}")
        self.text["positive"].set(s.positive_class or NO_POSITIVE)
        self.scale.state(["!disabled"] if s.uses_threshold else ["disabled"])
        self.entry.configure(state="normal" if s.uses_threshold else "disabled")
        self._draw_operating_point()

    def _draw_operating_point(self) -> None:
        """Say whether the threshold in force is the model's validated one: amber, with the way back, when not."""
        model, note = self.app.model, self.app.threshold_note()
        validated = model.validated_threshold if model is not None else None
        if note:
            self.text["threshold_note"].set(f"{note}: not the model's")
        elif model is not None and self.app.session.uses_threshold:
            self.text["threshold_note"].set("the model's validated threshold")
        else:
            self.text["threshold_note"].set("")
        self.threshold_label.configure(foreground=COLOURS["review"] if note else COLOURS["none"])
        back = validated is not None and bool(note)
        self.restore.configure(
            text=f"Back to the model's ({validated:.3f})" if validated is not None else "No validated threshold",
            state="normal" if back else "disabled",
        )

    def _state(self) -> tuple[object, ...]:
        s = self.app.session
        if s.position is None:
            return (None,)
        return (s.position, s.items[s.position].scored, self.gradcam.get())

    def refresh_item(self) -> None:
        """Redraw the current image, its decision, details and the status line."""
        s = self.app.session
        self._shown = self._state()
        self.text["status"].set(s.status_line())
        index = s.position
        view = s.view(index) if index is not None else None
        self._draw_image(view)
        if view is None or view.prediction is None:
            self._draw_undecided(view)
            return
        positive = view.prediction == s.positive_class
        self.text["decision"].set(view.prediction.upper())
        self.decision.configure(foreground=COLOURS["positive" if positive else "negative"])
        self.text["details"].set(self._details(view))
        others = [c for c in s.class_names if c != view.prediction]
        if self.text["override"].get() not in others:
            self.text["override"].set(others[0] if others else "")

    def _draw_undecided(self, view: ItemView | None) -> None:
        """An image without a class: unreadable, not judged (the gate's ``needs_review``), or not scored yet."""
        item = view.item if view is not None else None
        if item is not None and item.refused:
            score = item.gate.ood_score if item.gate is not None else None
            ood = f"\nout-of-distribution score {score:.2f}" if score is not None else ""
            decision, colour, details = NOT_JUDGED, "review", f"the model gave no class: {item.review}{ood}"
        else:
            decision = "ERROR" if item is not None and item.error else "-"
            colour, details = "none", item.error if item is not None else ""
        self.text["decision"].set(decision)
        self.decision.configure(foreground=COLOURS[colour])
        self.text["details"].set("\n".join([details, *(self._verdict_lines(view) if view is not None else [])]))

    def _details(self, v: ItemView) -> str:
        s = self.app.session
        lines = [f"confidence {v.confidence:.1%}", "   ".join(f"p({c}) = {p:.3f}" for c, p in v.probabilities.items())]
        if v.item.review:  # --gate warn: decided, with the gate's flag
            lines.insert(0, f"flagged for review: {v.item.review}")
        lines.append(f"latency {v.item.latency_ms or 0:.1f} ms")
        if s.uses_threshold:
            lines.append(
                f"threshold {s.threshold:.3f} on p({s.positive_class}): {s.positive_class} when p >= threshold"
            )
        else:
            lines.append("no threshold: the most probable class wins")
        mapping = ", ".join(
            f"{i} = {c}{' (positive)' if c == s.positive_class else ''}" for i, c in enumerate(s.class_names)
        )
        lines.append(f"class mapping: {mapping}")
        if v.item.truth is not None:
            lines.append(f"ground truth {v.item.truth} -> {v.prediction}: {v.match}")
        lines.extend(self._verdict_lines(v))
        return "\n".join(lines)

    @staticmethod
    def _verdict_lines(v: ItemView) -> list[str]:
        """The image's verdict as the log holds it, and whether the last one given is saved."""
        item, lines = v.item, []
        if item.verdict:
            note = f' "{item.comment}"' if item.comment else ""
            logged = item.logged_prediction
            said = f", logged decision {logged}" if logged != v.prediction else ""
            lines.append(
                f"verdict: {item.verdict} as {item.verdict_label}{note} (inspection #{item.inspection_id}{said})"
            )
        if item.saving:
            lines.append("saving the verdict...")
        elif item.unsaved:
            lines.append("last verdict NOT saved (the notice above says why)")
        return lines

    def _draw_image(self, view: ItemView | None) -> None:
        c = self.canvas
        w, h = (c.winfo_width(), c.winfo_height()) if c.winfo_width() > 1 else IMAGE_BOX  # 1: not drawn yet
        image = self._overlay(view) if view is not None else None
        key = None if view is None else (view.item.path, id(image) if image is not None else None)
        if key is not None and key == self._drawn:
            return  # the same picture: a new decision needs no redraw (and decoding takes the window's time)
        self._drawn = key
        c.delete("all")
        if view is None:
            hint = "Open an image or a folder\n(Tk has no drag and drop: use the Open buttons or --folder)"
            c.create_text(w // 2, h // 2, text=hint, fill="white", justify="center")
            return
        try:
            fitted = fit(image or self.image_of(view.item.path), (w, h))
        except DefectlensError as exc:  # unreadable: said inline, the batch goes on
            c.create_text(w // 2, h // 2, text=f"cannot show this image\n{exc}", fill="#ff6060", width=w - 40)
            return
        self._photo = ImageTk.PhotoImage(fitted, master=self.root)
        c.create_image(w // 2, h // 2, image=self._photo)

    def _overlay(self, view: ItemView) -> Image.Image | None:
        """The explanation overlay to show instead of the image, when the toggle is on and it is ready; the note
        names the path (``CAM (onnxruntime)`` from the graph, or ``Grad-CAM (torch)``)."""
        if not self.gradcam.get() or view.prediction is None:
            return None
        image = self.app.overlay(view.index)
        how = self.app.explain_method
        self.text["gradcam_note"].set(f"{how} of class {view.prediction}" if image else f"computing {how}...")
        return image

    def image_of(self, path: Path) -> Image.Image:
        """The image at ``path``, decoded once (the last few are kept)."""
        cache = self._images
        if path not in cache:
            if len(cache) > 16:
                cache.pop(next(iter(cache)))
            cache[path] = load_image(path)
        return cache[path]

    def refresh_metrics(self) -> None:
        """Ask for the figures at the current threshold (computed in the background) and draw what is in."""
        self._metrics_at = time.monotonic()
        self.app.request_metrics()
        self.draw_metrics()

    def draw_metrics(self) -> None:
        """FN, FP, accuracy and expected cost at the threshold they were computed at, beside the validated one."""
        m, model = self.app.figures, self.app.model
        if m is None:
            if not self.app.metrics_ready or not self.app.figures_current:
                text = "computing the figures..."
            else:
                text = "no ground truth: open a folder with class subfolders (e.g. ok/, defect/)"
            self.text["metrics"].set(text)
            return
        where = f"at threshold {m['threshold']:.3f}" if m.get("threshold") is not None else "by most probable class"
        lines = [f"{m['n']} labelled images, {where}:"]
        if "fn" in m:
            lines.append(f"missed defects (FN) {m['fn']}   false alarms (FP) {m['fp']}   accuracy {m['accuracy']:.1%}")
            costs = f"FN costs {m['cost_fn']:g}, FP {m['cost_fp']:g}"
            lines.append(f"expected cost {m['expected_cost']:.3f} per part ({costs})")
        else:
            lines.append(f"accuracy {m['accuracy']:.1%}")
        if model is not None and model.validated_threshold is not None:
            lines.append(f"validated threshold {model.validated_threshold:.3f} on p({model.validated_positive})")
        self.text["metrics"].set("\n".join(lines))

    # state the mixin keeps; the window's __init__ sets them before the first draw
    _shown: tuple[object, ...] = ()
    _drawn: tuple[object, ...] | None = None
    _metrics_at: float = 0.0
    _photo: ImageTk.PhotoImage | None = None
    _images: dict[Path, Image.Image]
