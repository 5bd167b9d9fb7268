"""${message}"""

from defectlens.inspections.migrations import apply

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}

SQL = {"sqlite": "", "postgresql": ()}


def upgrade() -> None:
    apply(SQL, version=int(revision))
