"""Adding images to a dataset that is already split, without moving an image or leaking a duplicate.

:func:`merge_manifest` appends the records of a newly imported manifest (the operators' verdicts from the
inspection log, or any other ``data import`` source) to an existing dataset:

* every existing record stays as it was, in its place (``manifest.csv`` grows only at the end);
* a new image that is a byte-identical copy of an image already there is left out (it is there already); where
  the two labels differ the conflict is reported, since one of them is wrong (so is a near duplicate's);
* a new image in a duplicate group (:func:`~defectlens.data.dedup.group_duplicates`, exact or near, at the
  dataset's own near-duplicate threshold) with existing images follows them, to the strictest of their splits
  (test before val before train), as :func:`~defectlens.data.split.split_manifest` places a group the source
  already placed: a duplicate of a test or val image never reaches train;
* every other new image is dealt by the dataset's own seeded, label-stratified rule (its seed, fractions and
  meta keys), a duplicate group at a time.

The merge is recorded in ``info["merges"]`` and its counts in ``info["split"]["counts"]``.
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.core.progress import Progress
from defectlens.data.dedup import DEFAULT_PHASH_THRESHOLD, HASH_SIZE, group_duplicates
from defectlens.data.manifest import Manifest, Record, replace
from defectlens.data.split import deal_groups  # the split's own dealing rule, so new images follow it

_STRICTEST = ("test", "val", "train")
#: The rule for a dataset split without a record of how (``data split``'s defaults).
DEFAULT_RULE: dict[str, Any] = {"seed": 0, "val": 0.1, "test": 0.2, "phash_threshold": DEFAULT_PHASH_THRESHOLD}
_PHASH_CHARS = 4 * HASH_SIZE * HASH_SIZE // 16


@dataclass
class MergeReport:
    """What a merge did with each new image.

    Attributes:
        added: new images per split.
        left_out: new images not added (an exact copy already in the dataset): path, reason.
        held_out: new images put in val or test because they duplicate an image there: path, split, twin.
        label_conflicts: new images whose copy or near duplicate in the dataset has another label.
        added_classes: classes the dataset did not have (only with ``add_classes``).
    """

    added: dict[str, int] = field(default_factory=dict)
    left_out: list[dict[str, str]] = field(default_factory=list)
    held_out: list[dict[str, str]] = field(default_factory=list)
    label_conflicts: list[dict[str, str]] = field(default_factory=list)
    added_classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": dict(self.added),
            "left_out": list(self.left_out),
            "held_out": list(self.held_out),
            "label_conflicts": list(self.label_conflicts),
            "added_classes": list(self.added_classes),
        }


def merge_manifest(
    existing: Manifest,
    new: Manifest,
    *,
    add_classes: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> tuple[Manifest, MergeReport]:
    """``existing`` with ``new``'s records appended (see the module docstring for where each one goes).

    Args:
        existing: the dataset merged into; split or not (an unsplit one just grows, to be split later).
        new: the imported records; their paths are made absolute when the two roots differ.
        add_classes: accept labels the dataset does not have (appended to its classes, so existing class indices
            stay); refused otherwise.
        workers: processes that hash existing images imported without a content or perceptual hash.
        progress: receives that hashing phase.

    Raises:
        DefectlensError: for labels the dataset lacks (named, unless ``add_classes``).
    """
    added_classes = _check_classes(existing, new, add_classes=add_classes)
    incoming = [replace(r, path=_portable(r.path, new.root, existing.root), split="", group="") for r in new.records]
    report = MergeReport(added_classes=added_classes)
    if not existing.records or not all(r.split for r in existing.records):
        kept = _drop_exact_copies(existing.records, incoming, report)
        report.added = {"": len(kept)} if kept else {}
        return _result(existing, new.info, kept, report), report
    existing_records = _with_hashes(existing, workers, progress)
    kept = _drop_exact_copies(existing_records, incoming, report)
    placed = _place(existing_records, kept, existing.info.get("split") or DEFAULT_RULE, report)
    for r in placed:
        report.added[r.split] = report.added.get(r.split, 0) + 1
    return _result(existing, new.info, placed, report), report


def _check_classes(existing: Manifest, new: Manifest, *, add_classes: bool) -> list[str]:
    """Labels of ``new`` the dataset lacks, in order; refused unless ``add_classes``."""
    known = set(existing.classes)
    missing = sorted({r.label for r in new.records} - known)
    if missing and not add_classes:
        counts = {c: sum(1 for r in new.records if r.label == c) for c in missing}
        shown = ", ".join(f"{c!r} ({n} image(s))" for c, n in counts.items())
        raise DefectlensError(
            f"the new images are labelled {shown}, not a class of the dataset ({', '.join(existing.classes)}); "
            "map them onto its classes with --map SRC=DST, or pass --add-class to add them"
        )
    return missing


def _portable(path: str, root: Path, target_root: Path) -> str:
    """``path`` (relative to ``root``) as the merged manifest names it: absolute unless the roots agree."""
    if path.startswith("pkg:") or Path(path).is_absolute() or root.resolve() == target_root.resolve():
        return path
    return str((root / path).resolve())


def _with_hashes(manifest: Manifest, workers: int | None, progress: Progress | None) -> list[Record]:
    """The existing records, each with its sha256 and perceptual hash (computed for those imported without)."""
    from defectlens.data.importers._probe import probe_files

    records = manifest.records
    missing = [i for i, r in enumerate(records) if not r.sha256 or len(str(r.meta.get("phash") or "")) != _PHASH_CHARS]
    if not missing:
        return records
    probes = probe_files([str(manifest.resolve(records[i])) for i in missing], workers=workers, progress=progress)
    out = list(records)
    for i, probe in zip(missing, probes, strict=True):
        # only for grouping: the records written back are the untouched originals
        phash = {"phash": probe["phash"]} if probe.get("phash") else {}
        out[i] = replace(out[i], sha256=out[i].sha256 or probe.get("sha256", ""), meta={**out[i].meta, **phash})
    return out


def _drop_exact_copies(existing: list[Record], incoming: list[Record], report: MergeReport) -> list[Record]:
    """``incoming`` less the byte-identical copies of an existing image (each reported, a label clash too)."""
    by_sha = {r.sha256: r for r in existing if r.sha256}
    kept = []
    for r in incoming:
        twin = by_sha.get(r.sha256) if r.sha256 else None
        if twin is None:
            kept.append(r)
            by_sha[r.sha256] = r
            continue
        where = twin.split or ("new" if twin in kept else "unsplit")
        report.left_out.append({**_named(r), "reason": f"a copy of {twin.path} ({where}, {twin.label})"})
        if twin.label != r.label:
            report.label_conflicts.append({**_named(r), "label": r.label, "twin": twin.path, "twin_label": twin.label})
    return kept


def _named(record: Record) -> dict[str, Any]:
    """How a report names a new record: its path, and the id its source gave it (the log's inspection id)."""
    named: dict[str, Any] = {"path": record.path}
    if "inspection_id" in record.meta:
        named["inspection_id"] = record.meta["inspection_id"]
    return named


def _place(existing: list[Record], new: list[Record], split_info: dict[str, Any], report: MergeReport) -> list[Record]:
    """The new records with a split and a group: a group's existing placement, or the dataset's dealing rule."""
    everything = [*existing, *new]
    threshold = int(split_info.get("phash_threshold", DEFAULT_PHASH_THRESHOLD))
    groups, _ = group_duplicates(
        [r.path for r in everything],
        sha256=[r.sha256 for r in everything],
        phash=[r.meta.get("phash") for r in everything],
        threshold=threshold,
    )
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    n_old = len(existing)
    placed: dict[int, Record] = {}
    free: dict[str, list[int]] = {}
    for idx in members.values():
        olds = [i for i in idx if i < n_old]
        news = [i - n_old for i in idx if i >= n_old]
        if not news:
            continue
        if not olds:
            free[groups[idx[0]]] = news
            continue
        twin = min(olds, key=lambda i: (_STRICTEST.index(existing[i].split), existing[i].path))
        for j in news:
            placed[j] = replace(new[j], split=existing[twin].split, group=existing[twin].group)
            if existing[twin].split != "train":
                report.held_out.append({**_named(new[j]), "split": existing[twin].split, "twin": existing[twin].path})
            if new[j].label != existing[twin].label:
                report.label_conflicts.append(
                    {
                        **_named(new[j]),
                        "label": new[j].label,
                        "twin": existing[twin].path,
                        "twin_label": existing[twin].label,
                    }
                )
    placed.update(_deal_free(new, free, split_info))
    return [placed[j] for j in range(len(new))]


def _deal_free(new: list[Record], free: dict[str, list[int]], split_info: dict[str, Any]) -> dict[int, Record]:
    """Deal the new groups that touch no existing image with the dataset's seed, fractions and strata."""
    if not free:
        return {}
    fractions = split_info.get("fractions_used") or {
        "train": 1.0 - split_info["val"] - split_info["test"],
        "val": split_info["val"],
        "test": split_info["test"],
    }
    stratify = [k for k in split_info.get("stratify", ["label"]) if k != "label"]
    assigned = deal_groups(new, free, dict(fractions), stratify_meta=stratify, seed=int(split_info.get("seed", 0)))
    names = {j: g for g, idx in free.items() for j in idx}
    return {j: replace(new[j], split=split, group=names[j]) for j, split in assigned.items()}


def _result(existing: Manifest, new_info: dict[str, Any], added: list[Record], report: MergeReport) -> Manifest:
    """The merged manifest: existing records untouched and first, the new ones after, the merge recorded."""
    records = [*existing.records, *added]
    info: dict[str, Any] = {"classes": [*existing.classes, *report.added_classes]}
    merged = Manifest(records, {**existing.info, **info})
    entry: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **{k: new_info[k] for k in ("source", "format", "skipped", "warnings", "log") if k in new_info},
        **report.to_dict(),
    }
    info["merges"] = [*existing.info.get("merges", []), entry]
    if existing.info.get("split"):
        info["split"] = {**existing.info["split"], "counts": merged.counts()}
    return existing.with_records(records, **info)


__all__ = ["DEFAULT_RULE", "MergeReport", "merge_manifest"]
