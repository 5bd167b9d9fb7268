"""``defectlens predict``: classify an image, a folder or a glob with a bundle or checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from defectlens.cli import EXIT_NEEDS_REVIEW, EXIT_OK, EXIT_SOME_FAILED
from defectlens.core.profile import GATE_MODES
from defectlens.inference.predictor import BACKENDS, PRECISIONS

#: How a folder is scored: in this process (workflows.predict) or on Ray (workflows.archive, the [ray] extra).
ENGINES = ("local", "ray")

_EPILOG = """\
archive: --engine ray scores a folder, glob or object-store URI (s3://, gs://) on Ray Data ('defectlens[ray]'):
the same rows and error rules, in OUT/predictions.parquet/ and OUT/predictions.csv; run it again to resume.
output: one image prints JSON; a folder or glob writes OUT/predictions.csv row by row (an unreadable
file is an error row with its reason) and prints a summary. Without --out each run gets a new folder
(./predictions, ./predictions-2, ...); an --out already holding predictions.csv needs --force.
columns: confidence is the probability of the PREDICTED class (a defect call at a low threshold can
have a confidence under 0.5); defect_probability (binary models) is the probability of the defect
class, the number compared with the threshold; warning notes a file decoded despite a problem
(corrupt JPEG data); reason says why an error row could not be used.
gate: a bundle exported with its data checks every frame first. A frame it flags (black, out of focus,
unlike the training images) is status needs_review with no class (--gate refuse) or keeps its class
(--gate warn); either way needs_review=true, gate_reason says why, ood_score is on every row.
exit codes: 0 all files classified, 1 some files failed (error rows), 2 bad arguments, model or input,
4 no file failed but some need review (the gate flagged them, in refuse or warn mode)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify images with a model bundle",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "target", metavar="IMAGE|DIR|GLOB", help="one image, a folder (class subfolders add ground truth) or a glob"
    )
    p.add_argument("--model", required=True, help="model bundle (.dlens), run folder or checkpoint")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold on the defect probability")
    p.add_argument(
        "--explain",
        action="store_true",
        help="write an explanation overlay PNG per image into the output "
        "(the CAM from the graph when the bundle has it, else Grad-CAM through torch)",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: a new ./predictions[-N])")
    p.add_argument("--force", action="store_true", help="replace the predictions already in --out")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help="model runtime (default: auto)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="graph in the bundle to run: auto (the bundle's default), fp32, or int8 when exported with --int8",
    )
    p.add_argument(
        "--gate",
        choices=GATE_MODES,
        default="refuse",
        help="frames the model cannot judge: refuse (no class, needs_review; the default), warn (the class and "
        "the flag) or off (no check)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per model call (default: 16)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference")
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process (the default); ray: an archive on a Ray cluster, one actor per core, written to "
        "OUT/predictions.parquet and predictions.csv; a re-run with the same --out skips the files already scored",
    )
    p.add_argument(
        "--address",
        default=None,
        help="--engine ray: the cluster (HOST:PORT, ray://HOST:PORT or auto; default: a local Ray on this machine)",
    )
    p.add_argument(
        "--actors", type=int, default=None, help="--engine ray: actors, one core each (default: one per CPU)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import progress_display
    from defectlens.core.errors import DefectlensError
    from defectlens.inference.predictor import Predictor
    from defectlens.workflows.predict import CSV_FILE, collect_inputs, output_folder, predict_files

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise DefectlensError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.batch_size < 1:
        raise DefectlensError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.engine == "ray":
        return _archive(args)
    if args.address is not None or args.actors is not None:
        raise DefectlensError("--address and --actors need --engine ray")
    predictor = Predictor.load(
        args.model, backend=args.backend, threads=args.threads, precision=args.precision, gate=args.gate
    )
    output = args.out / CSV_FILE if args.out is not None else None  # a new numbered folder holds no inputs
    inputs = collect_inputs(args.target, predictor.spec.class_names, output=output)
    if inputs.kind == "file":
        return _one(args, predictor, inputs.files[0])
    out = output_folder(args.out, force=args.force)
    with progress_display() as progress:
        summary = predict_files(
            predictor,
            inputs,
            out=out,
            threshold=args.threshold,
            explain=args.explain,
            batch_size=args.batch_size,
            progress=progress,
        )
    _print(summary, predictor.spec.class_names)
    return exit_code(errors=bool(summary.errors), review=bool(summary.review))


def _archive(args: argparse.Namespace) -> int:
    """--engine ray: the archive on Ray Data, then the summary ``predict DIR`` prints."""
    from defectlens.cli.output import progress_display, safe, stdout
    from defectlens.core.errors import DefectlensError
    from defectlens.workflows.archive import ArchiveModel, Cluster, score_archive

    if args.explain:
        raise DefectlensError(
            "--explain works with --engine local only: explain the frames of interest with a local predict afterwards"
        )
    if args.threads is not None:
        raise DefectlensError("--threads works with --engine local only: each Ray actor has one core (see --actors)")
    model = ArchiveModel(
        str(args.model), backend=args.backend, precision=args.precision, gate=args.gate,
        threshold=args.threshold, batch_size=args.batch_size,
    )  # fmt: skip
    with progress_display() as progress:
        summary = score_archive(
            args.target, model=model, out=args.out, force=args.force, cluster=Cluster(args.address, args.actors),
            progress=progress,
        )  # fmt: skip
    _print(summary, summary.class_names)
    stdout().print(f"parquet: {safe(str(summary.parquet_path))}", overflow="ignore", crop=False, soft_wrap=True)
    stdout().print(f"this run scored {summary.scored} files on {summary.actors} actors; {summary.skipped} had rows")
    return exit_code(errors=bool(summary.errors), review=bool(summary.review))


def exit_code(*, errors: bool, review: bool) -> int:
    """1 when some input failed; else 4 when the gate flagged some frame for review; else 0."""
    if errors:
        return EXIT_SOME_FAILED
    return EXIT_NEEDS_REVIEW if review else EXIT_OK


def _one(args: argparse.Namespace, predictor, file: Path) -> int:
    """One image: its result as JSON on stdout; the Grad-CAM overlay (--explain) into the output folder."""
    from defectlens.core.outputs import output_error
    from defectlens.core.text import utf8_text
    from defectlens.workflows.predict import output_folder, overlay_name

    pred = next(predictor.predict_many([str(file)], threshold=args.threshold))
    result = pred.to_dict()
    result["file"] = utf8_text(pred.file)  # JSON is UTF-8: the bytes of a name that is not, as \xNN
    if args.explain and pred.ok:
        from defectlens.explain.maps import save_overlay
        from defectlens.workflows.predict import explain_method

        result["explain_method"] = explain_method(predictor)
        target = output_folder(args.out, force=args.force) / overlay_name(file)
        try:
            save_overlay(predictor, file, target, target=pred.prediction)
        except OSError as exc:
            raise output_error(target, exc) from None
        result["overlay"] = utf8_text(str(target))
    from defectlens.cli.output import json_text

    print(json_text(result))
    return exit_code(errors=pred.status == "error", review=pred.needs_review)


#: Labels of the rows without a class in the summary's table: lower case and in brackets, apart from
#: the class names (counted by status, so a class named ``ERROR`` never merges with the failed files).
STATUS_LABELS = {"needs_review": "(needs review)", "error": "(error)"}


def _print(summary, class_names) -> None:
    from defectlens.cli.output import fmt, safe, stdout, table

    console = stdout()
    # every class, even at 0 (a count that is missing reads as a bug); errors only when there are some
    rows = [[safe(key), str(summary.counts.get(key, 0))] for key in class_names]
    rows += [[label, str(summary.statuses[s])] for s, label in STATUS_LABELS.items() if summary.statuses.get(s)]
    console.print(table(f"{summary.files} files", ["result", "count"], rows))
    console.print("predictions:")
    console.print(safe(str(summary.csv_path)), overflow="ignore", crop=False, soft_wrap=True)  # one line, never split
    if summary.explain_method:
        console.print(f"overlays: {summary.explain_method}")
    m = summary.metrics
    if m:
        recall = ", ".join(f"{safe(r['class'])} {r['recall']:.3f}" for r in m["per_class"] if r["support"])
        console.print(f"accuracy {fmt(m['accuracy'])} on {m['n']} labelled images; recall: {recall}")
        console.print(f"MISMATCH rows: {summary.mismatches}")
    for r in summary.warnings:
        console.print(f"warning {safe(r['file'])}: {safe(r['warning'])}")
    for r in summary.errors:
        console.print(f"error {safe(r['file'])}: {safe(r['reason'])}")
    _print_gate(console, summary)


_SHOWN = 20  # review rows listed by name; the CSV holds them all


def _print_gate(console, summary) -> None:
    """The gate in force (its note when it is off or partial) and the rows it flagged, with why."""
    from defectlens.cli.output import safe

    gate = summary.gate
    if not gate.get("active"):
        console.print(f"gate: off: {gate.get('note') or 'frames were not checked (--gate off)'}")
        return
    if gate.get("note"):
        console.print(f"gate: {gate['note']}")
    if not summary.review:
        console.print(f"gate ({gate['mode']}): every frame passed")
        return
    kept = " (classes kept: --gate warn)" if gate["mode"] == "warn" else ""
    console.print(f"gate ({gate['mode']}): {len(summary.review)} of {summary.files} frames need review{kept}")
    for r in summary.review[:_SHOWN]:
        console.print(f"needs review {safe(r['file'])}: {safe(r['gate_reason'])}")
    if len(summary.review) > _SHOWN:
        console.print(f"... and {len(summary.review) - _SHOWN} more: needs_review=true in the CSV")
