"""``defectlens data import|split|stats``: thin adapters over :mod:`defectlens.data`."""

from __future__ import annotations

import argparse
import json

from defectlens.core.errors import DefectlensError
from defectlens.data.importers import FORMATS
from defectlens.data.importers.neu import LABEL_SOURCES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="import a dataset, split it without leakage, show statistics")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("import", help="scan images into DIR/manifest.csv + dataset.json")
    p.add_argument("src", help="source folder, CSV file, or the word 'elpv'")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--map", action="append", default=[], metavar="SRC=DST", help="rename classes ('*' = all others)")
    p.add_argument("--elpv-classes", type=int, choices=(2, 4), default=2)
    p.add_argument(
        "--neu-labels",
        choices=LABEL_SOURCES,
        default="boxes",
        help="NEU-DET label: class with the largest box area in the XML, or the file name (NEU-CLS)",
    )
    p.add_argument("--positive", help="the defect class of a binary dataset")
    p.add_argument("--workers", type=int, default=None, help="decode/hash processes (default 2)")
    p.set_defaults(func=run_import)

    p = sub.add_parser("split", help="assign train/val/test in place, keeping duplicates together")
    p.add_argument("dir", help="dataset folder written by 'data import'")
    p.add_argument("--val", type=float, default=0.1)
    p.add_argument("--test", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stratify-meta", nargs="*", default=[], metavar="KEY", help="meta keys to stratify on too")
    p.add_argument("--ignore-official", action="store_true", help="re-split even if the source has its own splits")
    p.add_argument("--phash-threshold", type=int, default=None, help="near-duplicate Hamming distance (of 256)")
    p.add_argument("--drop-cross-duplicates", action="store_true", help="drop train/val copies of test images")
    p.set_defaults(func=run_split)

    p = sub.add_parser("stats", help="counts per class and split, sizes, duplicates, skipped files")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--grid", metavar="PNG", help="also write a sample grid image")
    p.set_defaults(func=run_stats)


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
    from defectlens.data.importers import import_dataset
    from defectlens.data.stats import dataset_stats

    with progress_display() as progress:
        manifest = import_dataset(
            args.src,
            fmt=args.format,
            elpv_classes=args.elpv_classes,
            neu_labels=args.neu_labels,
            mapping=_parse_map(args.map),
            positive=args.positive,
            workers=args.workers,
            progress=progress,
        )
    out = manifest.write(args.out)
    print_stats(stdout(), dataset_stats(manifest))
    for key, items in (manifest.info.get("neu") or {}).items():
        if items and key != "xml_with_other_classes":  # that one is a count in the warnings (111 on NEU-DET)
            print(f"{key.replace('_', ' ')}:")
            for item in items:
                print(f"  {item}")
    print(f"wrote {out / 'manifest.csv'} and {out / 'dataset.json'}")
    return 0


def run_split(args: argparse.Namespace) -> int:
    from defectlens.data.dedup import DEFAULT_PHASH_THRESHOLD
    from defectlens.data.manifest import Manifest
    from defectlens.data.split import split_manifest

    manifest = split_manifest(
        Manifest.read(args.dir),
        val=args.val,
        test=args.test,
        seed=args.seed,
        keep_official=not args.ignore_official,
        stratify_meta=tuple(args.stratify_meta),
        phash_threshold=DEFAULT_PHASH_THRESHOLD if args.phash_threshold is None else args.phash_threshold,
        drop_cross_duplicates=args.drop_cross_duplicates,
    )
    manifest.write(args.dir)
    info = manifest.info["split"]
    rep = info["report"]
    print(f"split seed={info['seed']} official={info['official_splits']} fractions={info['fractions_used']}")
    for split, counts in sorted(info["counts"].items()):
        print(f"  {split}: {sum(counts.values())} images {dict(sorted(counts.items()))}")
    print(
        f"duplicate groups: {rep['duplicate_groups']} ({rep['images_in_duplicate_groups']} images, "
        f"largest {rep['largest_groups'][:5]}); phash threshold {info['phash_threshold']}"
    )
    if rep["cross_split_groups"]:
        print(f"WARNING: {rep['cross_split_groups']} duplicate group(s) straddle the source's own splits:")
        for c in rep["cross_split_duplicates"]:
            print("  " + ", ".join(f"{p} [{s}]" for p, s in c["paths"].items()))
        print("  the official split is kept; --drop-cross-duplicates removes the train/val copies")
    if rep["mixed_label_groups"]:
        print(f"note: {rep['mixed_label_groups']} duplicate group(s) mix labels (check those labels)")
    if info["dropped_cross_duplicates"]:
        print(f"dropped {len(info['dropped_cross_duplicates'])} train/val copies of test images")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from defectlens.cli.output import stdout
    from defectlens.cli.summary import print_stats
    from defectlens.data.manifest import Manifest
    from defectlens.data.preview import sample_grid
    from defectlens.data.stats import dataset_stats

    manifest = Manifest.read(args.dir)
    stats = dataset_stats(manifest)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print_stats(stdout(), stats)
    if args.grid:
        print(f"wrote {sample_grid(manifest, args.grid)}")
    return 0
