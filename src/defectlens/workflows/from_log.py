"""Operator verdicts as training data: a dataset built from the inspection log's stored images.

``defectlens data import --from-log LOG --images DIR`` reads every inspection whose image the service (or a
station) kept with ``--store-images DIR`` and labels it with the operator's verdict: the class an override gave
the part, or the decision a confirmation agreed with (the log's ``verdict_label``). The log is one more import
source: its rows become the candidates of a :class:`~defectlens.data.importers._scan.Scan` and go through the
same probing, naming and reporting as a folder does (:func:`~defectlens.data.importers.import_scan`); with
``--merge-into`` they join a split dataset through :func:`~defectlens.data.merge.merge_manifest`.

What becomes a record: a row with a stored image and a verdict. Without a verdict a row is left out, unless
``include_unreviewed`` takes the model's own decision (``status`` ``ok``) as the label, marked
``label_source: model`` in the record's meta; a frame the model did not judge (``needs_review``, ``error``,
``dropped``) gets a label only from an operator. One stored file is one record: an image inspected more than
once takes its newest verdict, and reviews of it that disagree are reported. Each record's meta carries its
provenance: inspection id, station, model id, verdict, verdict time and operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.core.progress import Progress
from defectlens.data.importers import import_scan
from defectlens.data.importers._scan import Candidate, Scan
from defectlens.data.manifest import Manifest
from defectlens.data.merge import MergeReport, merge_manifest
from defectlens.inspections import Filters, Inspection, InspectionLog, parse_location

#: The ``format`` a dataset built from the log records in ``dataset.json``.
LOG_FORMAT = "inspection-log"
_PAGE = 1000


@dataclass(frozen=True)
class LogImportConfig:
    """What to take from the log.

    Attributes:
        log: the log's location, as ``--db`` takes it (a path, ``sqlite:///PATH``, ``postgresql://...``).
        images: the folder the service's ``--store-images`` wrote (rows keep paths relative to it).
        include_unreviewed: take the model's decision as the label of a decided row no operator reviewed.
        station, model_id: only rows of that station / model.
    """

    log: str | Path
    images: str | Path
    include_unreviewed: bool = False
    station: str | None = None
    model_id: str | None = None


@dataclass
class LogDataset:
    """The dataset built from the log, and what a merge did (``None`` without one)."""

    manifest: Manifest
    merge: MergeReport | None = None


def build_from_log(
    config: LogImportConfig,
    *,
    merge_into: str | Path | None = None,
    add_classes: bool = False,
    mapping: dict[str, str] | None = None,
    positive: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> LogDataset:
    """The dataset of the log's reviewed, stored images; merged into ``merge_into`` when given (not written).

    Raises:
        DefectlensError: for a missing log or image folder, a log without stored images, an empty selection, no
            usable image, or labels the dataset merged into lacks (unless ``add_classes``).
    """
    existing = Manifest.read(merge_into) if merge_into is not None else None
    scan = scan_log(config)
    manifest = import_scan(
        scan,
        fmt=LOG_FORMAT,
        source=scan.info["log"]["source"],
        mapping=mapping,
        positive=positive,
        workers=workers,
        progress=progress,
    )
    if existing is None:
        return LogDataset(manifest)
    merged, report = merge_manifest(existing, manifest, add_classes=add_classes, workers=workers, progress=progress)
    return LogDataset(merged, report)


def scan_log(config: LogImportConfig) -> Scan:
    """The log's labelled, stored images as import candidates; missing files are refused by name and counted.

    Raises:
        DefectlensError: see :func:`build_from_log`.
    """
    location = parse_location(config.log)
    if isinstance(location, Path) and not location.is_file():
        raise DefectlensError(f"{location}: no inspection log there; pass the file the service's --db names")
    images = Path(config.images).expanduser()
    if not images.is_dir():
        raise DefectlensError(f"{images}: no such folder; pass --images the folder the service's --store-images wrote")
    filters = Filters(station=config.station, model_id=config.model_id)
    with InspectionLog(location) as log:
        rows = _read_rows(log, filters)
        source = str(log.path)  # a database URL prints with its password masked
    scan = Scan(root=images.resolve(), name=f"log-{Path(str(location)).stem or 'inspections'}")
    stored = [r for r in rows if r.image_path]
    counts = _select(stored, scan, include_unreviewed=config.include_unreviewed)
    counts.update(rows=len(rows), stored=len(stored), source=source)
    scan.info["log"] = counts
    _check_selection(source, counts, filters, include_unreviewed=config.include_unreviewed)
    return scan


def _read_rows(log: InspectionLog, filters: Filters) -> list[Inspection]:
    """Every matching row, oldest first (paged newest first: a row recorded meanwhile shifts the pages, so a row
    may come twice, kept once by id, and none is missed)."""
    seen: dict[int, Inspection] = {}
    offset = 0
    while page := log.query(filters, limit=_PAGE, offset=offset):
        seen.update((r.id, r) for r in page)
        offset += len(page)
    return [seen[i] for i in sorted(seen)]


def _label(row: Inspection, include_unreviewed: bool) -> tuple[str | None, str]:
    """The row's label and who gave it (``operator`` or ``model``), or None when it has none to give."""
    if row.verdict is not None and row.verdict_label:
        return row.verdict_label, "operator"
    if include_unreviewed and row.status == "ok" and row.prediction:
        return row.prediction, "model"
    return None, ""


def _select(stored: list[Inspection], scan: Scan, *, include_unreviewed: bool) -> dict[str, Any]:
    """Add one candidate per stored file to ``scan`` (its newest verdict wins); the counts of what was left out."""
    chosen: dict[str, tuple[Inspection, str, str]] = {}
    labels_of: dict[str, set[str]] = {}
    counts = {"unreviewed": 0, "not_judged": 0, "missing_images": 0, "repeated": 0, "by_operator": 0, "by_model": 0}
    for row in stored:
        label, by = _label(row, include_unreviewed)
        if label is None:
            counts["not_judged" if row.status != "ok" else "unreviewed"] += 1
            continue
        ref = str(row.image_path)
        if ref in chosen:
            counts["repeated"] += 1
        if by == "operator":
            labels_of.setdefault(ref, set()).add(label)
        if ref not in chosen or _newer(row, by, chosen[ref]):
            chosen[ref] = (row, label, by)
    for ref, (row, label, by) in chosen.items():
        if len(labels_of.get(ref, ())) > 1:
            scan.warnings.append(
                f"{ref}: operators gave this image different labels ({', '.join(sorted(labels_of[ref]))}); "
                f"the newest verdict ({label}, inspection {row.id}) is used"
            )
        if _add(scan, row, label, by):
            counts[f"by_{by}"] += 1
        else:
            counts["missing_images"] += 1
    return counts


def _newer(row: Inspection, by: str, held: tuple[Inspection, str, str]) -> bool:
    """True when ``row`` labels its image better than ``held``: an operator before the model, then the newest."""
    old, _, old_by = held
    if (by == "operator") != (old_by == "operator"):
        return by == "operator"
    return (row.verdict_utc or "", row.id) > (old.verdict_utc or "", old.id)


def _add(scan: Scan, row: Inspection, label: str, by: str) -> bool:
    """Add ``row``'s stored image as a candidate, or refuse it by name (a missing file, a path outside the folder)."""
    ref = str(row.image_path)
    rel = PurePosixPath(ref)
    if rel.is_absolute() or ".." in rel.parts:
        scan.skip(ref, f"inspection {row.id}: stored path outside the image folder {scan.root}")
        return False
    file = scan.root / rel
    if not file.is_file():
        scan.skip(ref, f"inspection {row.id}: stored image missing from {scan.root} (file {file})")
        return False
    scan.candidates.append(Candidate(file=file, ref=rel.as_posix(), label=label, meta=provenance(row, by)))
    return True


def provenance(row: Inspection, by: str) -> dict[str, Any]:
    """What a record built from ``row`` keeps of where its label came from (the manifest's ``meta``)."""
    return {
        "inspection_id": row.id,
        "station": row.station,
        "model_id": row.model_id,
        "prediction": row.prediction,
        "verdict": row.verdict,
        "verdict_utc": row.verdict_utc,
        "operator": row.operator,
        "label_source": by,
        "inspected_utc": row.created_utc,
    }


def _check_selection(source: str, counts: dict[str, Any], filters: Filters, *, include_unreviewed: bool) -> None:
    """Refuse a log without stored images, and a selection that labels none of them."""
    narrowed = filters.station is not None or filters.model_id is not None
    where = " matching --station/--model-id" if narrowed else ""
    if not counts["rows"]:
        raise DefectlensError(f"{source}: no inspection{where} in the log")
    if not counts["stored"]:
        raise DefectlensError(
            f"{source}: none of the {counts['rows']} inspection(s){where} has a stored image; start the service "
            "with --store-images DIR so that it keeps the images it inspects, and review them"
        )
    if counts["by_operator"] + counts["by_model"] + counts["missing_images"] == 0:
        hint = "" if include_unreviewed else ", or pass --include-unreviewed to take the model's decisions"
        raise DefectlensError(
            f"{source}: none of the {counts['stored']} inspection(s){where} with a stored image has a label: "
            f"{counts['unreviewed']} await an operator's verdict, {counts['not_judged']} were not judged by the "
            f"model; review them (the service's verdict endpoint or page){hint}"
        )


__all__ = ["LOG_FORMAT", "LogDataset", "LogImportConfig", "build_from_log", "provenance", "scan_log"]
