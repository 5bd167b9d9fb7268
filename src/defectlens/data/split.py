"""Leakage-safe train/val/test splits.

Images are first unioned into duplicate groups (exact sha256 matches and perceptual-hash near
duplicates, see :mod:`defectlens.data.dedup`); a group is the unit of assignment, so copies of one
image never straddle two splits. Assignment is seeded and stratified by label (plus optional meta
keys, e.g. ELPV's ``probability`` and ``type`` for the Deitsch protocol). A source's own test
(and val) split is kept; duplicates the source itself placed on both sides are reported, not
silently moved.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.data.dedup import DEFAULT_PHASH_THRESHOLD, group_duplicates, group_size_histogram
from defectlens.data.manifest import SPLITS, Manifest, Record, replace

_MAX_LISTED = 50  # duplicate groups listed in full in the report; the rest are counted


def _phashes(manifest: Manifest, workers: int | None) -> list[str | None]:
    """Perceptual hashes from meta, computing the missing ones (manifests not written by import)."""
    from defectlens.data.dedup import HASH_SIZE
    from defectlens.data.importers._probe import probe_files

    hexes: list[str | None] = [r.meta.get("phash") for r in manifest.records]
    want = 4 * HASH_SIZE * HASH_SIZE // 16  # hex characters of a current hash
    missing = [i for i, h in enumerate(hexes) if not h or len(h) != want]
    if missing:
        probes = probe_files([str(manifest.resolve(manifest.records[i])) for i in missing], workers=workers)
        for i, probe in zip(missing, probes, strict=True):
            hexes[i] = probe.get("phash")
    return hexes


def _groups(manifest: Manifest, phash_threshold: int, workers: int | None) -> tuple[list[str], dict[str, int]]:
    """Duplicate group of every record (exact and near duplicates) and the pair counts.

    Raises:
        DefectlensError: for an empty manifest.
    """
    records = manifest.records
    if not records:
        raise DefectlensError("cannot split an empty manifest")
    return group_duplicates(
        [r.path for r in records],
        sha256=[r.sha256 for r in records],
        phash=_phashes(manifest, workers),
        threshold=phash_threshold,
    )


def _assign(sizes: list[int], fractions: dict[str, float], order: np.ndarray) -> list[str]:
    """Give each group (in ``order``) to the split furthest below its target image count."""
    total = sum(sizes)
    targets = {s: f * total for s, f in fractions.items()}
    filled = dict.fromkeys(fractions, 0)
    out = [""] * len(sizes)
    for gi in order:
        # Ties go to the smaller splits first, so tiny strata still reach test and val.
        split = max(fractions, key=lambda s: (targets[s] - filled[s], SPLITS.index(s)))
        out[gi] = split
        filled[split] += sizes[gi]
    return out


#: Largest near-duplicate distance accepted: beyond a quarter of the 256 bits every image links to every other.
MAX_PHASH_THRESHOLD = 64
#: A split with fewer images of a class than this gets a warning (its figures rest on a handful).
FEW_PER_CLASS = 5


def check_split_settings(*, val: float, test: float, seed: int, phash_threshold: int) -> None:
    """Refuse split settings that cannot make a usable split, naming the value.

    Raises:
        DefectlensError: for fractions outside [0, 1) or leaving under 10 % for train, a negative seed,
            or a near-duplicate threshold outside -1 (off) .. 64.
    """
    for name, value in (("val", val), ("test", test)):
        if not 0.0 <= value < 1.0:
            raise DefectlensError(f"--{name} {value}: a fraction of the images must be in [0, 1)")
    if val + test > 0.9:
        raise DefectlensError(f"--val {val} + --test {test} leave {1 - val - test:.2f} for training; keep it >= 0.1")
    if seed < 0:
        raise DefectlensError(f"--seed {seed}: seeds are integers >= 0")
    if not -1 <= phash_threshold <= MAX_PHASH_THRESHOLD:
        raise DefectlensError(
            f"--phash-threshold {phash_threshold}: the Hamming distance of 256-bit hashes must be in "
            f"0..{MAX_PHASH_THRESHOLD} (-1 turns near-duplicate grouping off)"
        )


def _check_result(counts: dict[str, dict[str, int]], classes: list[str]) -> list[str]:
    """Refuse a split that left train or val empty; warnings for classes thin in a split.

    Raises:
        DefectlensError: when the train or val split is empty.
    """
    if not counts.get("train"):
        raise DefectlensError(f"the split left train empty (counts {counts}); lower --val and --test")
    if not counts.get("val"):
        raise DefectlensError(f"the split left val empty (counts {counts}); training needs validation: pass --val > 0")
    thin = [
        f"{split} {c} {counts[split].get(c, 0)}"
        for split in SPLITS
        for c in classes
        if counts.get(split) and counts[split].get(c, 0) < FEW_PER_CLASS
    ]
    if not thin:
        return []
    return [
        f"fewer than {FEW_PER_CLASS} images of a class in a split ({', '.join(thin)}): its figures rest on few images"
    ]


def _official_placement(records: list[Record], members: dict[str, list[int]], official: set[str]) -> dict[int, str]:
    """The splits fixed before dealing: the source's own val/test (and train, when it has val too),
    the rest of a group the source already placed, and official-train images of such a group."""
    fixed = {i: r.split for i, r in enumerate(records) if r.split in official and r.split in ("test", "val")}
    if {"val", "test"} <= official:  # nothing left to carve from train
        fixed.update({i: "train" for i, r in enumerate(records) if r.split == "train"})
    assigned = dict(fixed)
    # Unassigned images of a group that the source already placed follow that placement.
    for idx in members.values():
        placed = [fixed[i] for i in idx if i in fixed]
        if placed:
            target = min(placed, key=lambda s: ("test", "val", "train").index(s))
            for i in idx:
                if i not in fixed and records[i].split not in official:
                    assigned[i] = target
    # Official-train images of a group that also has official test/val images stay train (flagged).
    pinned_train = {i for idx in members.values() if any(i in fixed for i in idx) for i in idx if i not in assigned}
    assigned.update(dict.fromkeys(pinned_train, "train"))
    return assigned


def deal_groups(
    records: list[Record],
    free: dict[str, list[int]],
    fractions: dict[str, float],
    *,
    stratify_meta: Sequence[str],
    seed: int,
) -> dict[int, str]:
    """Deal the free groups to splits, seeded and stratified by majority label (and meta keys)."""
    strata: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for g, idx in free.items():
        lead = min(idx, key=lambda i: records[i].path)
        labels = Counter(records[i].label for i in idx)
        key = (labels.most_common(1)[0][0], *(str(records[lead].meta.get(k, "")) for k in stratify_meta))
        strata[key].append(g)
    rng = np.random.default_rng(seed)
    assigned: dict[int, str] = {}
    for key in sorted(strata):
        gnames = sorted(strata[key])
        order = rng.permutation(len(gnames))
        for g, split in zip(gnames, _assign([len(free[g]) for g in gnames], fractions, order), strict=True):
            assigned.update(dict.fromkeys(free[g], split))
    return assigned


def split_manifest(
    manifest: Manifest,
    *,
    val: float = 0.1,
    test: float = 0.2,
    seed: int = 0,
    keep_official: bool = True,
    stratify_meta: Sequence[str] = (),
    phash_threshold: int = DEFAULT_PHASH_THRESHOLD,
    drop_cross_duplicates: bool = False,
    workers: int | None = None,
) -> Manifest:
    """Assign every record to train/val/test without leaking duplicates across splits.

    Args:
        manifest: an imported manifest.
        val: fraction of the splittable images for validation (carved from train when the source has a test split).
        test: fraction for test; ignored when the source has its own test split and ``keep_official``.
        seed: RNG seed; the same seed and manifest give the same split.
        keep_official: keep the source's own train/val/test assignment.
        stratify_meta: meta keys stratified on besides the label.
        phash_threshold: Hamming distance (of 256 bits) for near duplicates; negative disables them.
        drop_cross_duplicates: remove train/val copies of images whose duplicates the source put in test.
        workers: processes for hashing records that carry no perceptual hash.

    Returns:
        A new Manifest with ``split`` and ``group`` set and ``info["split"]`` describing the result.
    """
    check_split_settings(val=val, test=test, seed=seed, phash_threshold=phash_threshold)
    records = manifest.records
    groups, pair_counts = _groups(manifest, phash_threshold, workers)
    official = {r.split for r in records if r.split} if keep_official else set()
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    assigned = _official_placement(records, members, official)
    fractions = {"train": 1.0 - (0 if "val" in official else val) - (0 if "test" in official else test)}
    if "val" not in official:
        fractions["val"] = val
    if "test" not in official:
        fractions["test"] = test
    free = {g: rest for g, idx in members.items() if (rest := [i for i in idx if i not in assigned])}
    assigned.update(deal_groups(records, free, fractions, stratify_meta=stratify_meta, seed=seed))
    out = [replace(r, split=assigned[i], group=groups[i]) for i, r in enumerate(records)]
    report = _report(out, members, pair_counts)
    dropped: list[str] = []
    if drop_cross_duplicates and report["cross_split_groups"]:
        cross = {c["group"] for c in report["cross_split_duplicates_all"]}
        dropped = [r.path for r in out if r.group in cross and r.split != "test"]
        out = [r for r in out if not (r.group in cross and r.split != "test")]
    report.pop("cross_split_duplicates_all")
    counts = Manifest(out, manifest.info).counts()
    info = {
        "seed": seed,
        "val": val,
        "test": test,
        "keep_official": keep_official,
        "official_splits": sorted(official),
        "fractions_used": fractions,
        "stratify": ["label", *stratify_meta],
        "phash_threshold": phash_threshold,
        "counts": counts,
        "dropped_cross_duplicates": dropped,
        "report": report,
        "warnings": _check_result(counts, manifest.classes),
    }
    return manifest.with_records(out, split=info)


def fold_manifests(
    manifest: Manifest,
    *,
    folds: int = 5,
    seed: int = 0,
    stratify_meta: Sequence[str] = (),
    phash_threshold: int = DEFAULT_PHASH_THRESHOLD,
    workers: int | None = None,
) -> list[Manifest]:
    """Leakage-safe stratified k-fold cross-validation: one manifest per fold.

    Duplicate groups (as in :func:`split_manifest`) are dealt to ``folds`` folds of equal size,
    stratified by label (and ``stratify_meta``). In manifest ``i``, fold ``i`` is the test split,
    fold ``i + 1`` (mod k) the validation split (threshold and calibration are fitted there) and
    the rest train, so every image is tested exactly once across the k manifests.

    Raises:
        DefectlensError: for fewer than 3 folds or an empty manifest.
    """
    if folds < 3:
        raise DefectlensError(f"folds must be >= 3 (test, val and train each take one), got {folds}")
    records = manifest.records
    groups, _ = _groups(manifest, phash_threshold, workers)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    strata: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for g, idx in members.items():
        lead = min(idx, key=lambda i: records[i].path)
        label = Counter(records[i].label for i in idx).most_common(1)[0][0]
        strata[(label, *(str(records[lead].meta.get(k, "")) for k in stratify_meta))].append(g)
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for key in sorted(strata):
        gnames = sorted(strata[key])
        filled = [0] * folds
        for gi in rng.permutation(len(gnames)):
            f = min(range(folds), key=lambda k: (filled[k], k))  # the emptiest fold of this stratum
            fold_of[gnames[gi]] = f
            filled[f] += len(members[gnames[gi]])
    out = []
    for k in range(folds):
        role = {k: "test", (k + 1) % folds: "val"}
        rs = [replace(r, split=role.get(fold_of[groups[i]], "train"), group=groups[i]) for i, r in enumerate(records)]
        info = {
            "seed": seed,
            "folds": folds,
            "fold": k,
            "rule": "test = fold k, val = fold k+1 (mod folds), train = the rest",
            "stratify": ["label", *stratify_meta],
            "phash_threshold": phash_threshold,
            "counts": Manifest(rs, manifest.info).counts(),
        }
        out.append(manifest.with_records(rs, split=info))
    return out


def _report(records: list[Record], members: dict[str, list[int]], pair_counts: dict[str, int]) -> dict[str, Any]:
    dup_groups = [idx for idx in members.values() if len(idx) > 1]
    cross, mixed = [], []
    for idx in dup_groups:
        rs = [records[i] for i in idx]
        entry = {"group": rs[0].group, "paths": {r.path: f"{r.split}/{r.label}" for r in rs}}
        if len({r.split for r in rs}) > 1:
            cross.append(entry)
        if len({r.label for r in rs}) > 1:
            mixed.append(entry)
    return {
        "duplicate_groups": len(dup_groups),
        "images_in_duplicate_groups": sum(len(idx) for idx in dup_groups),
        "exact_duplicate_pairs": pair_counts["exact_pairs"],
        "near_duplicate_pairs": pair_counts["near_pairs"],
        "group_size_histogram": group_size_histogram(r.group for r in records),
        "largest_groups": sorted((len(i) for i in dup_groups), reverse=True)[:10],
        "cross_split_groups": len(cross),
        "cross_split_duplicates": cross[:_MAX_LISTED],
        "cross_split_duplicates_all": cross,
        "mixed_label_groups": len(mixed),
        "mixed_label_duplicates": mixed[:_MAX_LISTED],
    }


__all__ = ["fold_manifests", "split_manifest"]
