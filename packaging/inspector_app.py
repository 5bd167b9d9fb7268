"""Entry point of the standalone QA Inspector (``make inspector-app``, built by ``packaging/inspector.spec``).

The same window as ``defectlens inspector``, without the command line around it: the program a bench PC
runs with no Python installed. What the command line would print goes to a dialog instead, because a
windowed program on Windows has no console: a missing or corrupt model is named in an error dialog (and
the window stays open, so another model can be opened), and an unexpected error is one dialog line, never
a traceback. The window's title carries the image shown and its decision, so a script (or an operator
glancing at the task bar) can read the first verdict without looking inside the window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TITLE = "defectlens QA Inspector"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="defectlens-inspector", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="model bundle (.dlens), run folder or .onnx file")
    p.add_argument("--folder", type=Path, default=None, help="image folder (class subfolders give ground truth)")
    p.add_argument("--db", type=Path, default=None, help="inspection log (SQLite; default: the last log used)")
    p.add_argument("--gate", choices=("refuse", "warn", "off"), default="refuse", help="mode of the bundle's gate")
    return p.parse_args(argv)


def say(text: str) -> None:
    """One line on stderr where there is one (a windowed Windows program has none)."""
    if sys.stderr is not None:
        print(f"defectlens-inspector: {text}", file=sys.stderr, flush=True)


def error_dialog(text: str, parent: object | None = None) -> None:
    from tkinter import messagebox

    say(text)
    messagebox.showerror(f"{TITLE}: error", text, parent=parent)  # type: ignore[arg-type]


def window_class() -> type:
    """The Inspector window, with model errors shown in a dialog and the decision in the title."""
    from defectlens.gui.view import InspectorWindow

    class StandaloneWindow(InspectorWindow):
        def on_event(self, event) -> None:  # type: ignore[no-untyped-def]
            super().on_event(event)
            if event.kind == "model_error":
                error_dialog(event.text, parent=self.root)
            self._title()

        def refresh_item(self) -> None:
            super().refresh_item()
            self._title()

        def _title(self) -> None:
            session = self.app.session
            item = session.items[session.position] if session.items and session.position is not None else None
            if item is None or not item.scored:
                self.root.title(TITLE)
            else:
                self.root.title(f"{TITLE} - {item.path.name}: {self.text['decision'].get()}")

    return StandaloneWindow


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from defectlens.core.errors import DefectlensError
    from defectlens.gui.app import Inspector
    from defectlens.gui.launch import create_root

    try:
        root = create_root()
    except DefectlensError as exc:  # no display: there is no window to put a dialog on
        say(str(exc))
        return 2
    root.report_callback_exception = lambda kind, exc, tb: error_dialog(_sentence(exc), parent=root)
    try:
        app = Inspector(db=args.db, gate=args.gate)
    except DefectlensError as exc:  # an unusable log: said, then nothing to run
        error_dialog(str(exc))
        return 2
    window = window_class()(root, app)
    window.refresh()
    root.update()  # mapped first: a dialog is transient to the window, and Tk hides one whose window is not shown
    for path, what in ((args.model, "model"), (args.folder, "image folder")):
        if path is not None and not path.exists():
            error_dialog(f"{path}: {what} not found (no such file or folder)", parent=root)
    try:
        app.start(
            model=args.model if args.model is None or args.model.exists() else None,
            folder=args.folder if args.folder is None or args.folder.exists() else None,
        )
    except DefectlensError as exc:
        error_dialog(str(exc), parent=root)
    window.refresh()
    root.mainloop()
    return 0


def _sentence(exc: BaseException) -> str:
    from defectlens.core.errors import DefectlensError

    return str(exc) if isinstance(exc, DefectlensError) else f"unexpected error: {type(exc).__name__}: {exc}"


if __name__ == "__main__":
    sys.exit(main())
