"""The Manifest: one row per image, plus ``dataset.json`` with class names and provenance.

A dataset folder written by ``defectlens data import`` holds ``manifest.csv`` and
``dataset.json``; images stay where they are (paths are relative to the recorded source root, or
``pkg:`` references to files inside an installed Python package such as ``elpv-dataset``).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.core.outputs import atomic_output, output_error, write_all

MANIFEST_FILE = "manifest.csv"
INFO_FILE = "dataset.json"
SPLITS = ("train", "val", "test")
_COLUMNS = ("path", "label", "split", "sha256", "width", "height", "mode", "group", "meta")


@dataclass(frozen=True)
class Record:
    """One image of a dataset."""

    path: str
    label: str
    split: str = ""
    sha256: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    group: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    """Rows of :class:`Record` plus dataset-level ``info`` (classes, root, provenance, reports)."""

    records: list[Record]
    info: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        """Class names in a fixed order (the index used for labels everywhere)."""
        return list(self.info["classes"])

    @property
    def root(self) -> Path:
        return Path(self.info.get("root", "."))

    def label_index(self, record: Record) -> int:
        return self.classes.index(record.label)

    def split(self, name: str) -> list[Record]:
        """Records of one split (``train``, ``val`` or ``test``)."""
        return [r for r in self.records if r.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: n}}`` including unassigned rows under ``""``."""
        out: dict[str, Counter[str]] = {}
        for r in self.records:
            out.setdefault(r.split, Counter())[r.label] += 1
        return {s: dict(c) for s, c in out.items()}

    def resolve(self, record: Record) -> Path:
        """Absolute path of a record's image file."""
        return resolve_path(record.path, self.root)

    def with_records(self, records: list[Record], **info: Any) -> Manifest:
        return Manifest(records=records, info={**self.info, **info})

    def write(self, folder: str | Path) -> Path:
        """Write ``manifest.csv`` and ``dataset.json`` into ``folder`` (created if needed).

        Each file is written whole or not at all (a temporary file renamed into place), so a failure
        (a full disk, an interrupt) never leaves half a manifest that would read as a smaller dataset.

        Raises:
            DefectlensError: when the folder cannot be written, naming it and the reason.
        """
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(folder, exc) from None
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=_COLUMNS)
        writer.writeheader()
        for r in self.records:
            row = asdict(r)
            row["meta"] = json.dumps(r.meta, sort_keys=True) if r.meta else ""
            writer.writerow(row)
        with atomic_output(folder / MANIFEST_FILE) as fh:
            write_all(fh, text.getvalue().encode("utf-8"))
        with atomic_output(folder / INFO_FILE) as fh:
            write_all(fh, (json.dumps(self.info, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        return folder

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        """Read a dataset folder written by :meth:`write`.

        Raises:
            DefectlensError: if the folder or its files are missing or malformed.
        """
        folder = Path(folder)
        mpath, ipath = folder / MANIFEST_FILE, folder / INFO_FILE
        if not mpath.is_file() or not ipath.is_file():
            raise DefectlensError(
                f"{folder}: not a defectlens dataset (expected {MANIFEST_FILE} and {INFO_FILE}); "
                "create one with 'defectlens data import'"
            )
        try:
            info = json.loads(ipath.read_text(encoding="utf-8"))
            with mpath.open(newline="", encoding="utf-8") as fh:
                records = [
                    Record(
                        path=row["path"],
                        label=row["label"],
                        split=row.get("split") or "",
                        sha256=row.get("sha256") or "",
                        width=int(row.get("width") or 0),
                        height=int(row.get("height") or 0),
                        mode=row.get("mode") or "",
                        group=row.get("group") or "",
                        meta=json.loads(row["meta"]) if row.get("meta") else {},
                    )
                    for row in csv.DictReader(fh)
                ]
        except (KeyError, ValueError) as exc:
            raise DefectlensError(f"{folder}: malformed dataset files ({exc})") from None
        unknown = {r.label for r in records} - set(info.get("classes", []))
        if unknown:
            raise DefectlensError(f"{mpath}: labels {sorted(unknown)} are not in dataset.json classes")
        return cls(records=records, info=info)


def resolve_path(ref: str, root: Path) -> Path:
    """Resolve a manifest path: ``pkg:package/inner/path``, absolute, or relative to ``root``."""
    if ref.startswith("pkg:"):
        package, _, inner = ref[4:].partition("/")
        try:
            base = resources.files(package)
        except ModuleNotFoundError:
            raise DefectlensError(f"{ref}: Python package {package!r} is not installed (pip install it)") from None
        return Path(str(base.joinpath(inner)))
    p = Path(ref)
    return p if p.is_absolute() else root / p


__all__ = ["INFO_FILE", "MANIFEST_FILE", "SPLITS", "Manifest", "Record", "replace", "resolve_path"]
