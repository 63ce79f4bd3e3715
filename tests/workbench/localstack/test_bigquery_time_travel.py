"""The BigQuery emulator with and without its per-write time-travel copies (workbench.localstack.bigquery_main)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from workbench.localstack.emulators import start_bigquery_emulator

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("time_travel", [True, False])
def test_time_travel_copies_are_taken_only_when_asked(time_travel, monkeypatch):
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    with start_bigquery_emulator(project="tt", time_travel=time_travel) as emulator:
        client = emulator.client()
        client.query("CREATE SCHEMA `tt.d`").result()
        client.query("CREATE TABLE `tt.d.t` (n INT64)").result()
        client.insert_rows_json("tt.d.t", [{"n": 1}])
        time.sleep(1.1)
        between = datetime.now(UTC)
        time.sleep(1.1)
        client.insert_rows_json("tt.d.t", [{"n": 2}])
        as_of = f"SELECT COUNT(*) AS n FROM `tt.d.t` FOR SYSTEM_TIME AS OF TIMESTAMP '{between.isoformat()}'"
        # Without the copies there is no history: the emulator answers AS OF from the table as it is now.
        assert next(iter(client.query(as_of).result()))["n"] == (1 if time_travel else 2)
        assert next(iter(client.query("SELECT COUNT(*) AS n FROM `tt.d.t`").result()))["n"] == 2
