"""Schema 4: a line station's frames.

A line station's frames (#27): which station, when the frame was captured (created_utc is when the row was
decided), the part or trigger id where the source has one; status gains 'dropped'
"""

from defectlens.inspections.migrations import apply

revision = "0004"
down_revision = "0003"

SQL = {
    "sqlite": """
    ALTER TABLE inspections ADD COLUMN station TEXT;
    ALTER TABLE inspections ADD COLUMN captured_utc TEXT;
    ALTER TABLE inspections ADD COLUMN part_id TEXT;
    CREATE INDEX inspections_station ON inspections (station);
    """,
    "postgresql": (
        "ALTER TABLE inspections ADD COLUMN station TEXT",
        "ALTER TABLE inspections ADD COLUMN captured_utc TEXT",
        "ALTER TABLE inspections ADD COLUMN part_id TEXT",
        "CREATE INDEX inspections_station ON inspections (station)",
    ),
}


def upgrade() -> None:
    apply(SQL, version=4)
