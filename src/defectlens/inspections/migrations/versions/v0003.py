"""Schema 3: the gate's finding.

The gate's finding (#26): the OOD score, and whether the frame was flagged (NULL: not gated; rows logged
before have no finding); status gains the value 'needs_review' (the column has no CHECK)
"""

from defectlens.inspections.migrations import apply

revision = "0003"
down_revision = "0002"

SQL = {
    "sqlite": """
    ALTER TABLE inspections ADD COLUMN ood_score REAL;
    ALTER TABLE inspections ADD COLUMN gate_flagged INTEGER;
    CREATE INDEX inspections_status ON inspections (status);
    """,
    "postgresql": (
        "ALTER TABLE inspections ADD COLUMN ood_score DOUBLE PRECISION",
        "ALTER TABLE inspections ADD COLUMN gate_flagged INTEGER",
        "CREATE INDEX inspections_status ON inspections (status)",
    ),
}


def upgrade() -> None:
    apply(SQL, version=3)
