"""``defectlens data import|split|stats``: thin adapters over :mod:`defectlens.data`."""

from __future__ import annotations

import argparse

from defectlens.core.errors import DefectlensError
from defectlens.data.dedup import DEFAULT_PHASH_THRESHOLD
from defectlens.data.importers import FORMATS
from defectlens.data.importers.neu import LABEL_SOURCES
from defectlens.data.importers.sources import ELPV_CLASSES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="import a dataset, split it without leakage, show statistics")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("import", help="scan images (or the inspection log's reviewed ones) into a dataset folder")
    p.add_argument("src", nargs="?", help="source folder, CSV file, or the word 'elpv' (none with --from-log)")
    p.add_argument(
        "--format", default="auto", choices=("auto", *FORMATS), help="source layout (default: detected from the source)"
    )
    p.add_argument("--out", help="dataset folder to write (default with --merge-into: that dataset, in place)")
    p.add_argument("--force", action="store_true", help="replace a dataset already in --out (its split is lost)")
    p.add_argument("--map", action="append", default=[], metavar="SRC=DST", help="rename classes ('*' = all others)")
    p.add_argument(
        "--elpv-classes", type=int, choices=ELPV_CLASSES, default=2, help="ELPV: 2 classes or 4 (by expert probability)"
    )
    p.add_argument(
        "--neu-labels",
        choices=LABEL_SOURCES,
        default="boxes",
        help="NEU-DET label: class with the largest box area in the XML, or the file name (NEU-CLS)",
    )
    p.add_argument("--positive", help="the defect class of a binary dataset")
    p.add_argument("--workers", type=int, default=None, help="decode/hash processes (default 2)")
    p.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="csv: read paths outside the CSV's folder (refused by default, so a CSV cannot point at system files)",
    )
    _add_log_options(p)
    p.set_defaults(func=run_import)

    p = sub.add_parser("split", help="assign train/val/test in place, keeping duplicates together")
    p.add_argument("dir", help="dataset folder written by 'data import'")
    p.add_argument("--val", type=float, default=0.1, help="fraction for validation (default 0.1)")
    p.add_argument("--test", type=float, default=0.2, help="fraction for test when the source has none (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the assignment (default 0)")
    p.add_argument("--stratify-meta", nargs="*", default=[], metavar="KEY", help="meta keys to stratify on too")
    p.add_argument("--ignore-official", action="store_true", help="re-split even if the source has its own splits")
    p.add_argument(
        "--phash-threshold",
        type=int,
        default=DEFAULT_PHASH_THRESHOLD,
        help=f"near-duplicate Hamming distance of 256-bit hashes, -1 off (default {DEFAULT_PHASH_THRESHOLD})",
    )
    p.add_argument("--drop-cross-duplicates", action="store_true", help="drop train/val copies of test images")
    p.set_defaults(func=run_split)

    p = sub.add_parser("stats", help="counts per class and split, sizes, duplicates, skipped files")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--grid", metavar="PNG", help="also write a sample grid image")
    p.set_defaults(func=run_stats)


def _add_log_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("from the inspection log (operator verdicts as labels)")
    g.add_argument("--from-log", metavar="LOG", help="the log, as --db takes it: a path, sqlite:///PATH, postgresql://")
    g.add_argument("--images", metavar="DIR", help="the folder the service's --store-images wrote")
    g.add_argument(
        "--include-unreviewed", action="store_true", help="label decided rows nobody reviewed with the model's decision"
    )
    g.add_argument("--station", help="only this station's inspections")
    g.add_argument("--model-id", help="only inspections decided by this model")
    g = p.add_argument_group("into an existing dataset (any source)")
    g.add_argument("--merge-into", metavar="DATASET", help="add the images to this dataset, keeping its split")
    g.add_argument("--add-class", action="store_true", help="with --merge-into: accept classes the dataset lacks")


def _parse_map(items: list[str]) -> dict[str, str] | None:
    mapping = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise DefectlensError(f"--map {item!r}: expected SRC=DST, e.g. --map scratches=defect --map '*'=ok")
        mapping[src] = dst
    return mapping or None


def run_import(args: argparse.Namespace) -> int:
    from defectlens.cli.output import progress_display, stdout
    from defectlens.cli.summary import print_stats
    from defectlens.data.stats import dataset_stats

    out = _import_out(args)
    with progress_display() as progress:
        if args.from_log:
            manifest, merge = _from_log(args, progress)
        else:
            manifest, merge = _from_source(args, progress)
    out = manifest.write(out)
    console = stdout()
    print_stats(console, dataset_stats(manifest))
    for key, items in (manifest.info.get("neu") or {}).items():
        if items and key != "xml_with_other_classes":  # that one is a count in the warnings (111 on NEU-DET)
            console.print(f"{key.replace('_', ' ')}:")
            for item in items:
                console.print(f"  {item}")
    if merge is not None:
        _print_merge(console, manifest.info["merges"][-1], args.merge_into)
    elif args.from_log:
        _print_log(console, manifest.info["log"])
    console.print(f"wrote {out / 'manifest.csv'} and {out / 'dataset.json'}")
    return 0


def _import_out(args: argparse.Namespace):
    """Where ``data import`` writes: ``--out`` (refused when it holds a dataset, unless --force) or the dataset
    ``--merge-into`` names, in place."""
    from pathlib import Path

    from defectlens.core.outputs import check_output
    from defectlens.data.manifest import MANIFEST_FILE

    if args.from_log and args.src:
        raise DefectlensError(f"give either a source ({args.src}) or --from-log {args.from_log}, not both")
    if not args.from_log and not args.src:
        raise DefectlensError("give a source folder, CSV file or 'elpv', or --from-log LOG")
    if args.from_log and not args.images:
        raise DefectlensError("--from-log needs --images DIR: the folder the service's --store-images wrote")
    if args.add_class and not args.merge_into:
        raise DefectlensError("--add-class only applies with --merge-into DATASET")
    if args.out is None or (args.merge_into and Path(args.out).resolve() == Path(args.merge_into).resolve()):
        if not args.merge_into:
            raise DefectlensError("--out DIR is required: the dataset folder to write (or --merge-into DATASET)")
        return Path(args.merge_into)
    for path in (Path(args.out), Path(args.out) / MANIFEST_FILE):
        check_output(path, force=args.force, what="--out" if path == Path(args.out) else MANIFEST_FILE)
    if (Path(args.out) / MANIFEST_FILE).is_file() and not args.force:
        raise DefectlensError(
            f"{args.out} already holds a dataset (and its split); pass --force to replace it, or another --out"
        )
    return Path(args.out)


def _from_log(args: argparse.Namespace, progress):
    from defectlens.workflows.from_log import LogImportConfig, build_from_log

    config = LogImportConfig(
        log=args.from_log,
        images=args.images,
        include_unreviewed=args.include_unreviewed,
        station=args.station,
        model_id=args.model_id,
    )
    built = build_from_log(
        config,
        merge_into=args.merge_into,
        add_classes=args.add_class,
        mapping=_parse_map(args.map),
        positive=args.positive,
        workers=args.workers,
        progress=progress,
    )
    return built.manifest, built.merge


def _from_source(args: argparse.Namespace, progress):
    from defectlens.data.importers import import_dataset
    from defectlens.data.manifest import Manifest
    from defectlens.data.merge import merge_manifest

    manifest = import_dataset(
        args.src,
        fmt=args.format,
        elpv_classes=args.elpv_classes,
        neu_labels=args.neu_labels,
        mapping=_parse_map(args.map),
        positive=args.positive,
        workers=args.workers,
        progress=progress,
        allow_outside_root=args.allow_outside_root,
    )
    if not args.merge_into:
        return manifest, None
    existing = Manifest.read(args.merge_into)
    return merge_manifest(existing, manifest, add_classes=args.add_class, workers=args.workers, progress=progress)


def _print_log(console, log) -> None:
    console.print(
        f"from {log['source']}: {log['rows']} inspection(s), {log['stored']} with a stored image; labelled by an "
        f"operator {log['by_operator']}, by the model {log['by_model']}; left out: {log['unreviewed']} awaiting a "
        f"verdict, {log['not_judged']} not judged by the model, {log['missing_images']} stored image(s) missing, "
        f"{log['repeated']} repeat inspection(s) of an image"
    )


def _print_merge(console, entry, dataset) -> None:
    if entry.get("log"):
        _print_log(console, entry["log"])
    for s in entry.get("skipped", []):
        console.print(f"skipped {s['path']}: {s['reason']}")
    for w in entry.get("warnings", []):
        console.print(f"warning: {w}")
    added = ", ".join(f"{split or 'unsplit'} {n}" for split, n in entry["added"].items()) or "nothing"
    console.print(f"merged into {dataset}: added {added}; the split of its images is unchanged")
    if entry["added_classes"]:
        console.print(f"added class(es): {', '.join(entry['added_classes'])}")
    for h in entry["held_out"]:
        console.print(f"kept out of train: {_named(h)} -> {h['split']} (a duplicate of {h['split']} image {h['twin']})")
    for o in entry["left_out"]:
        console.print(f"left out: {_named(o)}: {o['reason']}")
    for c in entry["label_conflicts"]:
        console.print(
            f"warning: {_named(c)} is labelled {c['label']} but its duplicate {c['twin']} is {c['twin_label']}: "
            "check both"
        )


def _named(item) -> str:
    return f"inspection {item['inspection_id']} ({item['path']})" if "inspection_id" in item else item["path"]


def run_split(args: argparse.Namespace) -> int:
    from defectlens.cli.output import stdout
    from defectlens.data.manifest import Manifest
    from defectlens.data.split import split_manifest

    manifest = split_manifest(
        Manifest.read(args.dir),
        val=args.val,
        test=args.test,
        seed=args.seed,
        keep_official=not args.ignore_official,
        stratify_meta=tuple(args.stratify_meta),
        phash_threshold=args.phash_threshold,
        drop_cross_duplicates=args.drop_cross_duplicates,
    )
    manifest.write(args.dir)
    _print_split(stdout(), manifest.info["split"], manifest.classes)
    return 0


def _print_split(console, info, classes) -> None:
    from defectlens.cli.output import table

    rep = info["report"]
    kept = f"; the source's own {', '.join(info['official_splits'])} kept" if info["official_splits"] else ""
    counts = {s: info["counts"].get(s, {}) for s in ("train", "val", "test")}
    rows = [[s, *(str(n.get(c, 0)) for c in classes), str(sum(n.values()))] for s, n in counts.items()]
    console.print(table(f"split (seed {info['seed']}){kept}", ["split", *classes, "total"], rows))
    console.print(
        f"duplicate groups kept on one side: {rep['duplicate_groups']} ({rep['images_in_duplicate_groups']} images, "
        f"largest {max(rep['largest_groups'], default=0)}); near-duplicate threshold {info['phash_threshold']}"
    )
    if rep["cross_split_groups"]:
        console.print(f"warning: {rep['cross_split_groups']} duplicate group(s) straddle the source's own splits:")
        for c in rep["cross_split_duplicates"][:10]:
            console.print("  " + ", ".join(f"{p} [{s}]" for p, s in c["paths"].items()))
        console.print("  the official split is kept; --drop-cross-duplicates removes the train/val copies")
    if rep["mixed_label_groups"]:
        console.print(f"note: {rep['mixed_label_groups']} duplicate group(s) mix labels (check those labels)")
    if info["dropped_cross_duplicates"]:
        console.print(f"dropped {len(info['dropped_cross_duplicates'])} train/val copies of test images")
    for w in info.get("warnings", []):
        console.print(f"warning: {w}")


def run_stats(args: argparse.Namespace) -> int:
    from defectlens.cli.output import json_text, stdout
    from defectlens.cli.summary import print_stats
    from defectlens.data.manifest import Manifest
    from defectlens.data.preview import sample_grid
    from defectlens.data.stats import dataset_stats

    manifest = Manifest.read(args.dir)
    stats = dataset_stats(manifest)
    if args.json:
        print(json_text(stats))
    else:
        print_stats(stdout(), stats)
    if args.grid:
        print(f"wrote {sample_grid(manifest, args.grid)}")
    return 0
