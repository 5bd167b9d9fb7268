"""Schema 2: decoding warnings.

What decoding noticed but did not stop for (corrupt JPEG data, bad EXIF...)
"""

from defectlens.inspections.migrations import apply

revision = "0002"
down_revision = "0001"

SQL = {
    "sqlite": """ALTER TABLE inspections ADD COLUMN warning TEXT NOT NULL DEFAULT '';""",
    "postgresql": ("ALTER TABLE inspections ADD COLUMN warning TEXT NOT NULL DEFAULT ''",),
}


def upgrade() -> None:
    apply(SQL, version=2)
