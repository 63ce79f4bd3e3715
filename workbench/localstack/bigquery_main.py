"""Run bqemulator, optionally without its per-write time-travel copies.

    python -m workbench.localstack.bigquery_main [--no-time-travel] start --rest-port 9050 ...

bqemulator keeps time travel by copying the whole table after every write (an AUTO snapshot, kept for 7 days).
Under streaming inserts that is quadratic. Measured here, 50,000 rows in 200 inserts: 13,550 rows/s and 1,358 MB
of RSS with the copies, 28,581 rows/s and 223 MB without; an end-to-end pipeline benchmark at 2,000 rows/s
reached 19 GB of RSS and 28 GB of DuckDB spill files within minutes. With --no-time-travel the AUTO copies are
not taken, so FOR SYSTEM_TIME AS OF reads the table as it is now; user snapshots (CREATE SNAPSHOT TABLE) still
work. The embedded stack serves long load tests, so `workbench up` runs without them unless
--bigquery-time-travel is given.
"""

from __future__ import annotations

import itertools
import sys


def disable_auto_snapshots() -> None:
    from bqemulator.versioning.snapshots import SnapshotManager

    original = SnapshotManager.capture

    def capture(self, project_id, dataset_id, table_id, *, kind="AUTO"):
        if kind == "AUTO":
            return None  # callers already handle None ("table gone"): the change event is still published
        return original(self, project_id, dataset_id, table_id, kind=kind)

    SnapshotManager.capture = capture


def forget_strict_job_ids(argv: list[str]) -> None:
    """Strict BigQuery mode remembers the job ids used on an endpoint (BigQuery refuses one twice). An emulator
    without --persistent starts with no jobs, so the ids used on an earlier one at this address are free again."""
    from endpoints import bigquery_strict
    from eventmodel.resources import BIGQUERY_EMULATOR_PORT, LOCAL_HOST

    if "--persistent" in argv or not bigquery_strict.strict_enabled():
        return
    flags = dict(itertools.pairwise(argv))
    host, port = flags.get("--rest-host", LOCAL_HOST), flags.get("--rest-port", str(BIGQUERY_EMULATOR_PORT))
    bigquery_strict.JobRegistry.from_environment().forget(f"http://{host}:{port}")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--no-time-travel":
        disable_auto_snapshots()
        argv = argv[1:]
    forget_strict_job_ids(argv)
    from bqemulator.cli import main as bqemulator_main

    sys.argv = ["bqemulator", *argv]
    return bqemulator_main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
