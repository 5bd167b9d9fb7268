"""The inspection log: every decision the web service or the desktop inspector made, and the
operator's verdict on it, in one SQLite file both surfaces share (:class:`InspectionLog`)."""

from defectlens.inspections.images import ImageStore
from defectlens.inspections.store import (
    MAX_ID,
    SCHEMA_VERSION,
    VERDICTS,
    Filters,
    Inspection,
    InspectionLog,
    NewInspection,
    Tally,
    VerdictEntry,
)

__all__ = [
    "MAX_ID",
    "SCHEMA_VERSION",
    "VERDICTS",
    "Filters",
    "ImageStore",
    "Inspection",
    "InspectionLog",
    "NewInspection",
    "Tally",
    "VerdictEntry",
]
