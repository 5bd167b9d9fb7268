"""Starting the inspector: the Tk root window (or a clear error where none can open) and the main loop."""

from __future__ import annotations

import os
import sys
import tkinter as tk
from pathlib import Path

from defectlens.core.errors import DefectlensError
from defectlens.core.profile import GateMode
from defectlens.gui.app import Inspector
from defectlens.gui.view import InspectorWindow


def create_root() -> tk.Tk:
    """The Tk root window, or a DefectlensError saying why no window can be opened here."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        raise DefectlensError(
            "no display: $DISPLAY is not set. The inspector is a desktop window; start it in a desktop "
            "session (or under Xvfb), or use 'defectlens predict' or 'defectlens serve' on a headless machine"
        )
    try:
        return tk.Tk(className="defectlens")
    except tk.TclError as exc:
        raise DefectlensError(f"cannot open a window on display {os.environ.get('DISPLAY', '')!r}: {exc}") from None


def run_inspector(
    *,
    model: str | Path | None = None,
    folder: str | Path | None = None,
    db: str | Path | None = None,
    gate: GateMode = "refuse",
) -> None:
    """Open the inspector window and run it until it is closed."""
    root = create_root()
    app = Inspector(db=db, gate=gate)
    window = InspectorWindow(root, app)
    try:
        app.start(model=model, folder=folder)
    except DefectlensError as exc:
        window.message(str(exc), error=True)
    window.refresh()
    root.mainloop()
