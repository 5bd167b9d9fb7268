"""Dataset statistics: counts per class and split, sizes, modes, duplicates, skipped files, sample grid."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from defectlens.data.manifest import SPLITS, Manifest


def dataset_stats(manifest: Manifest) -> dict[str, Any]:
    """Summary of a manifest as plain JSON-able data."""
    records = manifest.records
    by_sha = Counter(r.sha256 for r in records if r.sha256)
    groups = Counter(r.group for r in records if r.group)
    counts = manifest.counts()
    per_class = Counter(r.label for r in records)
    split_info = manifest.info.get("split") or {}
    return {
        "name": manifest.info.get("name"),
        "format": manifest.info.get("format"),
        "root": manifest.info.get("root"),
        "images": len(records),
        "classes": manifest.classes,
        "positive_class": manifest.info.get("positive_class"),
        "per_class": {c: per_class.get(c, 0) for c in manifest.classes},
        "per_split": {s or "unassigned": dict(sorted(counts[s].items())) for s in (*SPLITS, "") if s in counts},
        "sizes": dict(Counter(f"{r.width}x{r.height}" for r in records).most_common()),
        "modes": dict(Counter(r.mode for r in records).most_common()),
        "exact_duplicate_sets": sum(1 for n in by_sha.values() if n > 1),
        "duplicate_groups": sum(1 for n in groups.values() if n > 1),
        "cross_split_groups": (split_info.get("report") or {}).get("cross_split_groups"),
        "skipped": list(manifest.info.get("skipped", [])),
        "warnings": list(manifest.info.get("warnings", [])),
    }


def print_stats(stats: dict[str, Any]) -> None:
    """Print the statistics as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    splits = list(stats["per_split"])
    table = Table(title=f"{stats['name']} ({stats['format']}): {stats['images']} images")
    table.add_column("class")
    for s in splits:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for c in stats["classes"]:
        mark = " (positive)" if c == stats["positive_class"] else ""
        table.add_row(c + mark, *(str(stats["per_split"][s].get(c, 0)) for s in splits), str(stats["per_class"][c]))
    console.print(table)
    console.print(f"sizes: {_top(stats['sizes'])}   modes: {_top(stats['modes'])}")
    console.print(
        f"exact duplicate sets: {stats['exact_duplicate_sets']}   duplicate groups: {stats['duplicate_groups']}"
        + (f"   groups across splits: {stats['cross_split_groups']}" if stats["cross_split_groups"] is not None else "")
    )
    for w in stats["warnings"]:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    if stats["skipped"]:
        console.print(f"[red]{len(stats['skipped'])} file(s) skipped:[/]")
        for s in stats["skipped"]:
            console.print(f"  {s['path']}: {s['reason']}", highlight=False, markup=False)


def _top(counter: dict[str, int], n: int = 4) -> str:
    items = list(counter.items())
    text = ", ".join(f"{k} ({v})" for k, v in items[:n])
    return text + (f", +{len(items) - n} more" if len(items) > n else "")


def sample_grid(manifest: Manifest, path: str | Path, *, per_class: int = 8, tile: int = 96, seed: int = 0) -> Path:
    """Write a PNG with one row of ``per_class`` random images per class, labelled by class name."""
    import numpy as np
    from PIL import Image, ImageDraw

    from defectlens.data.images import convert_mode, load_image

    rng = np.random.default_rng(seed)
    label_w = 140
    classes = manifest.classes
    grid = Image.new("RGB", (label_w + per_class * tile, max(1, len(classes)) * tile), "white")
    draw = ImageDraw.Draw(grid)
    for row, c in enumerate(classes):
        rs = [r for r in manifest.records if r.label == c]
        pick = sorted(rng.choice(len(rs), size=min(per_class, len(rs)), replace=False).tolist()) if rs else []
        draw.text((6, row * tile + tile // 2 - 6), f"{c} ({len(rs)})", fill="black")
        for col, i in enumerate(pick):
            img = convert_mode(load_image(manifest.resolve(rs[i])), 3).resize((tile - 4, tile - 4))
            grid.paste(img, (label_w + col * tile + 2, row * tile + 2))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


__all__ = ["dataset_stats", "print_stats", "sample_grid"]
