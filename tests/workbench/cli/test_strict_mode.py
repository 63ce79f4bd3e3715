"""Strict BigQuery mode switched on by a user (WORKBENCH_BIGQUERY_STRICT=1 alone) holds reads to the DDL's partition
rules: the CLI hands them down to the client factory (endpoints.bigquery_strict) through the environment."""

from __future__ import annotations

import json
import os

from ddl.model import partition_rules
from endpoints.bigquery_strict import RULES_ENV, STRICT_ENV
from workbench.cli import main


def test_the_cli_hands_the_ddl_partition_rules_to_strict_mode(monkeypatch, home, capsys):
    monkeypatch.setenv(STRICT_ENV, "1")
    monkeypatch.delenv(RULES_ENV, raising=False)
    main(["--help"])
    assert json.loads(os.environ[RULES_ENV]) == partition_rules() == {"user_activity": "timestamp"}


def test_rules_a_user_set_are_kept_and_none_are_set_outside_strict_mode(monkeypatch, home, capsys):
    monkeypatch.setenv(STRICT_ENV, "1")
    monkeypatch.setenv(RULES_ENV, '{"orders": "event_time"}')
    main(["--help"])
    assert os.environ[RULES_ENV] == '{"orders": "event_time"}'
    monkeypatch.delenv(STRICT_ENV)
    monkeypatch.delenv(RULES_ENV)
    main(["--help"])
    assert RULES_ENV not in os.environ
