"""Tk pieces of the inspector besides the main window: file dialogs, the advanced panel, a scrolling side
panel, image fitting.

The advanced panel describes a plain ONNX graph (class names typed or loaded from a text file,
channels, input size, mean/std, resize policy, class order) or overrides a bundle's settings; it
only gathers values into an :class:`~defectlens.gui.model.Advanced` and hands them to a callback.
"""

from __future__ import annotations

import importlib.util
import tkinter as tk
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from tkinter import filedialog, ttk

from PIL import Image

from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec
from defectlens.data.images import convert_mode
from defectlens.gui.model import CHANNELS, RESIZE_CHOICES, Advanced, read_class_names, supported_resize

#: The advanced panel's fields, by the :class:`Advanced` field each one sets.
_FIELDS = {
    "class_names": "class_names",
    "channels": "in_channels",
    "size": "input_size",
    "mean": "mean",
    "std": "std",
    "resize": "resize",
}
IMAGE_TYPES = [("Images", "*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.gif"), ("All files", "*")]


class Dialogs:
    """The file choosers the window opens (a class so a test or another front end can answer them)."""

    def __init__(self, parent: tk.Misc):
        self.parent = parent

    def model(self) -> str:
        checkpoints = " *.pt" if importlib.util.find_spec("torch") else ""  # a .pt checkpoint opens through torch
        types = [("Models", f"*.dlens *.onnx{checkpoints}"), ("All files", "*")]
        return filedialog.askopenfilename(parent=self.parent, title="Open model", filetypes=types)

    def model_folder(self) -> str:
        return filedialog.askdirectory(parent=self.parent, title="Open run folder", mustexist=True)

    def image(self) -> str:
        return filedialog.askopenfilename(parent=self.parent, title="Open image", filetypes=IMAGE_TYPES)

    def folder(self) -> str:
        return filedialog.askdirectory(parent=self.parent, title="Open image folder", mustexist=True)

    def save_csv(self) -> str:
        types = [("CSV", "*.csv")]
        return filedialog.asksaveasfilename(
            parent=self.parent, title="Export batch", defaultextension=".csv", filetypes=types
        )

    def class_file(self) -> str:
        types = [("Text", "*.txt"), ("All files", "*")]
        return filedialog.askopenfilename(parent=self.parent, title="Class names", filetypes=types)


def fit(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """``image`` scaled to fit ``box`` (up or down) keeping its aspect ratio, as 8-bit RGB: 16- and 32-bit
    images are scaled by their bit depth as the model's preprocessing does (PIL's own conversion clips them,
    and a 16-bit part shows solid white)."""
    scale = min(box[0] / image.width, box[1] / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return convert_mode(image, 3).resize(size, Image.Resampling.BILINEAR)


class ScrollFrame(ttk.Frame):
    """A frame whose :attr:`inner` frame scrolls vertically when it is taller than the window gives it
    (the side panel on a 1024x600 line PC); the mouse wheel scrolls it, and :meth:`reveal` brings a widget
    into view (called when a field in it takes the keyboard focus).

    Args:
        parent: where it goes.
        width: its width in pixels (fixed, so a long text never makes the panel wider).
    """

    def __init__(self, parent: tk.Misc, *, width: int):
        super().__init__(parent)
        self.canvas = tk.Canvas(self, width=width, height=100, highlightthickness=0, takefocus=False)
        self.bar = ttk.Scrollbar(self, orient="vertical", command=self.canvas.yview)
        self.canvas.configure(yscrollcommand=self.bar.set)
        self.bar.pack(side="right", fill="y")
        self.canvas.pack(side="left", fill="both", expand=True)
        self.inner = ttk.Frame(self.canvas, padding=(8, 4))
        self._window = self.canvas.create_window(0, 0, window=self.inner, anchor="nw")
        self.inner.bind("<Configure>", self._resized)
        self.canvas.bind("<Configure>", lambda e: self.canvas.itemconfigure(self._window, width=e.width))
        for sequence in ("<Button-4>", "<Button-5>", "<MouseWheel>"):
            self.bind_all(sequence, self._wheel, add="+")
        self.inner.bind_all("<FocusIn>", self._focused, add="+")

    def _resized(self, _event: tk.Event) -> None:
        self.canvas.configure(scrollregion=(0, 0, self.inner.winfo_reqwidth(), self.inner.winfo_reqheight()))

    def _inside(self, widget: object) -> bool:
        return isinstance(widget, tk.Misc) and str(widget).startswith(str(self.inner))

    def _wheel(self, event: tk.Event) -> None:
        if self._inside(event.widget) or event.widget is self.canvas:
            up = event.num == 4 or getattr(event, "delta", 0) > 0
            self.canvas.yview_scroll(-2 if up else 2, "units")

    def _focused(self, event: tk.Event) -> None:
        if self._inside(event.widget):
            self.reveal(event.widget)

    def reveal(self, widget: tk.Misc) -> None:
        """Scroll so that ``widget`` (inside :attr:`inner`) is in view, when it is not."""
        self.update_idletasks()
        total = max(1, self.inner.winfo_reqheight())
        top = widget.winfo_rooty() - self.inner.winfo_rooty()
        bottom = top + widget.winfo_height()
        first, last = (f * total for f in self.canvas.yview())
        if top < first:
            self.canvas.yview_moveto(top / total)
        elif bottom > last:
            self.canvas.yview_moveto((bottom - (last - first)) / total)


class AdvancedPanel(tk.Toplevel):
    """The advanced settings dialog.

    Args:
        parent: the main window.
        spec: the settings shown at first (the loaded model's, or None for blank fields).
        advanced: the overrides in force (their swap flag is shown).
        on_apply: called with the new overrides (None: clear them) when the operator presses Apply.
        dialogs: where the "load class names" file chooser comes from.
    """

    def __init__(
        self,
        parent: tk.Misc,
        *,
        spec: ModelSpec | None,
        advanced: Advanced | None,
        on_apply: Callable[[Advanced | None], None],
        dialogs: Dialogs,
    ):
        super().__init__(parent)
        self.title("Advanced model settings")
        self.on_apply, self.dialogs = on_apply, dialogs
        self.vars = {k: tk.StringVar(self) for k in ("class_names", "channels", "size", "mean", "std", "resize")}
        self.swap = tk.BooleanVar(self, value=bool(advanced and advanced.swap_classes))
        self.error = tk.StringVar(self)
        self._fill(spec)
        # a field applied as shown keeps what is in force (the model's own value, or the override given before):
        # its text is rounded for reading, so parsing it back would mark it overridden by a rounding difference
        self._kept = _FIELDS if spec is not None else {}
        self._shown = {k: var.get() for k, var in self.vars.items()}
        self._in_force = advanced or Advanced()
        self._build()

    def _fill(self, spec: ModelSpec | None) -> None:
        if spec is None:
            self.vars["channels"].set("gray")
            self.vars["resize"].set("squash")
            return
        self.vars["class_names"].set(", ".join(spec.class_names))
        self.vars["channels"].set("gray" if spec.in_channels == 1 else "RGB")
        self.vars["size"].set(str(spec.input_size))
        self.vars["mean"].set(", ".join(f"{v:g}" for v in spec.mean))
        self.vars["std"].set(", ".join(f"{v:g}" for v in spec.std))
        self.vars["resize"].set(spec.resize)

    def _build(self) -> None:
        frame = ttk.Frame(self, padding=10)
        frame.grid(sticky="nsew")
        rows = [
            ("Class names (output order)", ttk.Entry(frame, textvariable=self.vars["class_names"], width=40)),
            (
                "Channels",
                ttk.Combobox(frame, textvariable=self.vars["channels"], values=list(CHANNELS), state="readonly"),
            ),
            ("Input size (px)", ttk.Entry(frame, textvariable=self.vars["size"], width=8)),
            ("Mean (per channel)", ttk.Entry(frame, textvariable=self.vars["mean"], width=24)),
            ("Std (per channel)", ttk.Entry(frame, textvariable=self.vars["std"], width=24)),
            ("Resize", ttk.Combobox(frame, textvariable=self.vars["resize"], values=RESIZE_CHOICES, state="readonly")),
        ]
        for r, (label, widget) in enumerate(rows):
            ttk.Label(frame, text=label).grid(row=r, column=0, sticky="w", pady=2)
            widget.grid(row=r, column=1, sticky="we", pady=2)
        ttk.Button(frame, text="Load names...", command=self._load_names).grid(row=0, column=2, padx=4)
        missing = [m for m in RESIZE_CHOICES if m not in supported_resize()]
        note = f"not implemented by preprocessing yet: {', '.join(missing)}" if missing else ""
        ttk.Label(frame, text=note, foreground="gray40").grid(row=5, column=2, sticky="w")
        ttk.Checkbutton(frame, text="Swap class order", variable=self.swap).grid(row=6, column=1, sticky="w")
        ttk.Label(frame, text="A defectlens graph normalises inside; mean/std are recorded in the spec.",
                  foreground="gray40").grid(row=7, column=0, columnspan=3, sticky="w")  # fmt: skip
        ttk.Label(frame, textvariable=self.error, foreground="red", wraplength=420).grid(row=8, column=0, columnspan=3)
        buttons = ttk.Frame(frame)
        buttons.grid(row=9, column=0, columnspan=3, pady=(8, 0))
        self.buttons: dict[str, ttk.Button] = {}
        for label, command in (("Apply", self._apply), ("Clear overrides", self._clear), ("Cancel", self.destroy)):
            self.buttons[label] = ttk.Button(buttons, text=label, command=command)
            self.buttons[label].pack(side="left", padx=4)

    def _load_names(self) -> None:
        path = self.dialogs.class_file()
        if path:
            try:
                self.vars["class_names"].set(", ".join(read_class_names(Path(path))))
            except DefectlensError as exc:
                self.error.set(str(exc))

    def values(self) -> Advanced:
        """The panel's fields as overrides (a field left as shown keeps what is in force); raises
        DefectlensError naming a field that does not parse."""
        typed = self._typed()
        kept = {name: getattr(self._in_force, name) for key, name in self._kept.items() if key not in typed}
        return replace(self._parse(typed), **kept)

    def _typed(self) -> dict[str, str]:
        """The fields the operator changed (every field when the panel describes a model without a spec)."""
        v = {k: var.get().strip() for k, var in self.vars.items()}
        return {k: text for k, text in v.items() if k not in self._kept or text != self._shown[k].strip()}

    def _parse(self, typed: dict[str, str]) -> Advanced:
        v = {k: typed.get(k, "") for k in self.vars}

        def numbers(key: str) -> tuple[float, ...] | None:
            try:
                return tuple(float(x) for x in v[key].replace(",", " ").split()) or None
            except ValueError:
                raise DefectlensError(f"{key} must be numbers separated by commas, got {v[key]!r}") from None

        if v["size"] and not v["size"].isdigit():
            raise DefectlensError(f"input size must be a whole number of pixels, got {v['size']!r}")
        names = tuple(n.strip() for n in v["class_names"].split(",") if n.strip())
        return Advanced(
            class_names=names or None,
            in_channels=CHANNELS.get(v["channels"]),
            input_size=int(v["size"]) if v["size"] else None,
            mean=numbers("mean"),
            std=numbers("std"),
            resize=v["resize"] or None,
            swap_classes=self.swap.get(),
        )

    def _apply(self) -> None:
        try:
            advanced = self.values()
        except DefectlensError as exc:
            self.error.set(str(exc))
            return
        self.on_apply(advanced)
        self.destroy()

    def _clear(self) -> None:
        self.on_apply(None)
        self.destroy()
