"""``defectlens inspector``: the desktop QA Inspector window (Tk).

Load a model (bundle, run folder or plain ONNX), step through an image folder, move the threshold
with its missed-defect / false-alarm trade-off in view, see Grad-CAM, record verdicts in the
inspection log and export the batch. Needs a display; on a headless machine use ``predict`` or ``serve``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from defectlens.core.profile import GATE_MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspector", help="open the desktop QA Inspector window", description=__doc__)
    p.add_argument("--model", type=Path, default=None, help="model bundle (.dlens), run folder or .onnx file")
    p.add_argument("--folder", type=Path, default=None, help="image folder (class subfolders give ground truth)")
    p.add_argument(
        "--db",
        default=None,
        help="inspection log: a SQLite file (or sqlite:///PATH) or postgresql://USER:PASSWORD@HOST:PORT/DB (or env "
        "DEFECTLENS_DB; default: the last log used, from the settings, else the user data folder)",
    )
    p.add_argument(
        "--gate",
        choices=GATE_MODES,
        default="refuse",
        help="a frame the model cannot judge: refuse (no class: needs review), warn (class and flag) or off",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from defectlens.core.errors import DefectlensError
    from defectlens.inspections.engine import parse_location

    for flag, path in (("--model", args.model), ("--folder", args.folder)):
        if path is not None and not path.exists():
            raise DefectlensError(f"{flag} {path}: no such file or folder")
    try:
        from defectlens.gui.launch import run_inspector
    except ImportError as exc:
        if exc.name not in ("tkinter", "_tkinter", "PIL.ImageTk", "PIL._tkinter_finder"):
            raise
        raise DefectlensError(
            "the inspector needs Tk, which this Python lacks: install python3-tk (Debian/Ubuntu) or a Python with Tk"
        ) from None
    db = args.db or os.environ.get("DEFECTLENS_DB")
    if db:
        parse_location(db)  # a location that is neither a path nor a database URL is refused before a window opens
    run_inspector(model=args.model, folder=args.folder, db=db, gate=args.gate)
    return 0
