"""Dataset statistics: counts per class and split, sizes, modes, duplicates, skipped and leaked files.

Returns plain data; the command line renders it (``defectlens data stats``).
"""

from __future__ import annotations

from collections import Counter
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
        "leakage": manifest.info.get("leakage"),
        "skipped": list(manifest.info.get("skipped", [])),
        "warnings": list(manifest.info.get("warnings", [])),
    }


__all__ = ["dataset_stats"]
