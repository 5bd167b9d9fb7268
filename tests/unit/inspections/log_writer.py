"""One writer process of the many-writers test: group commits through :class:`InspectionLog`, as the service's log
batcher makes them, printing each committed row as ``id name`` only once ``record_many`` has returned (what a
client would be told). Runs until killed.

    python -m tests.unit.inspections.log_writer URL NAME [BATCH]
"""

from __future__ import annotations

import sys

from defectlens.inspections import InspectionLog
from tests.unit.inspections.test_store import item


def main(url: str, name: str, batch: int) -> None:
    log = InspectionLog(url)
    n = 0
    while True:
        names = [f"{name}-{n + k}" for k in range(batch)]
        ids = log.record_many([item(x) for x in names])
        sys.stdout.write("".join(f"{i} {x}\n" for i, x in zip(ids, names, strict=True)))
        sys.stdout.flush()
        n += batch


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 4)
