"""The inspection log: every decision the web service, a line station or the desktop inspector made, and the
operator's verdict on it, in one log they share (:class:`InspectionLog`): a SQLite file, or a PostgreSQL
database for many writers (:mod:`defectlens.inspections.engine` says how a location is given)."""

from defectlens.inspections.engine import DatabaseURL, LogUnavailable, parse_location
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
    "DatabaseURL",
    "Filters",
    "ImageStore",
    "Inspection",
    "InspectionLog",
    "LogUnavailable",
    "NewInspection",
    "Tally",
    "VerdictEntry",
    "parse_location",
]
