"""`workbench bq apply | render` through the real CLI entry point."""

from __future__ import annotations

import socket

import pytest
from ddl_helpers import PROJECT

from ddl.apply import EMULATOR_GAPS, apply_ddl, load_statements
from workbench.cli import main


def test_dry_run_prints_every_statement_in_order_and_connects_to_nothing(cli_runner):
    result = cli_runner(
        "bq", "apply", "--dry-run", "--project", "my-proj", "--dataset", "ev", "--emulator", "127.0.0.1:1"
    )
    assert result.exit_code == 0, result.output
    statements = load_statements(project="my-proj", dataset="ev")
    labels = [line[3:] for line in result.output.splitlines() if line.startswith("-- ") and "#" in line[:40]]
    assert labels == [s.label for s in statements]
    assert "CREATE SCHEMA IF NOT EXISTS `my-proj.ev`" in result.output
    assert "${" not in result.output


def test_no_emulator_is_a_clear_error_in_a_moment(capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SystemExit) as exit_info:
        main(["bq", "apply", "--emulator", f"127.0.0.1:{port}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no BigQuery emulator answers" in err and "workbench up" in err


def test_a_bad_dataset_name_is_refused(cli_runner):
    result = cli_runner("bq", "apply", "--dry-run", "--dataset", "bad-name", catch_exceptions=True)
    assert result.exit_code != 0 and "not a valid BigQuery dataset id" in str(result.exception)


def test_render_fills_placeholders_and_asks_for_missing_ones(cli_runner):
    result = cli_runner("bq", "render", "ddl/ops/history_load.sql", "--project", "p", "--set", "history_uri=gs://b/h")
    assert (
        result.exit_code == 0 and "gs://b/h/order/*" in result.output and "`p.events.history_orders`" in result.output
    )
    missing = cli_runner("bq", "render", "ddl/ops/history_load.sql", catch_exceptions=True)
    assert missing.exit_code != 0 and "history_uri" in str(missing.exception)


@pytest.mark.parametrize("name", ["ops/snapshots.sql", "snapshots", "ddl/ops/snapshots"])
def test_render_finds_a_packaged_run_book_from_any_folder(name, tmp_path, monkeypatch, cli_runner):
    monkeypatch.chdir(tmp_path)  # no ddl/ here: the installed package's copy is used
    result = cli_runner("bq", "render", name, "--project", "p")
    assert result.exit_code == 0, result.output
    assert "`p.events." in result.output


def test_render_of_an_unknown_file_lists_the_packaged_ones(cli_runner):
    result = cli_runner("bq", "render", "nope.sql", catch_exceptions=True)
    assert result.exit_code != 0
    assert "ops/snapshots.sql" in result.exception.fix and "10_orders.sql" in result.exception.fix


@pytest.mark.integration
def test_apply_to_the_emulator(bigquery_emulator, cli_runner):
    result = cli_runner(
        "bq", "apply", "--project", PROJECT, "--dataset", "cli_events", "--emulator", bigquery_emulator.host_port
    )
    assert result.exit_code == 0, result.output
    assert f"applied {len(load_statements(project=PROJECT, dataset='cli_events'))} statement(s)" in result.output


@pytest.mark.integration
def test_statements_the_emulator_cannot_run_are_skipped_and_reported(bigquery_emulator, tmp_path):
    (tmp_path / "00_model.sql").write_text(
        "CREATE SCHEMA IF NOT EXISTS `${project}.${dataset}`;\n"
        "CREATE TABLE IF NOT EXISTS `${project}.${dataset}.t` (x INT64);\n"
        "CREATE SNAPSHOT TABLE IF NOT EXISTS `${project}.${dataset}.t_snap` CLONE `${project}.${dataset}.t`\n"
        "  OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY));\n"
    )
    seen = []
    result = apply_ddl(
        project=PROJECT,
        dataset="gaps",
        emulator=bigquery_emulator.host_port,
        ddl_dir=tmp_path,
        progress=lambda statement, outcome: seen.append((statement.label, outcome)),
    )
    assert [s.label for s in result.applied] == ["00_model.sql#1", "00_model.sql#2"]
    [(skipped, why)] = result.skipped
    assert skipped.label == "00_model.sql#3" and why in {w for _, w in EMULATOR_GAPS}
    assert seen[-1] == ("00_model.sql#3", f"skipped: {why}")


@pytest.mark.integration
def test_any_other_failure_stops_the_apply(bigquery_emulator, tmp_path):
    from ddl.errors import DdlError

    (tmp_path / "00_bad.sql").write_text("CREATE TABLE `${project}.${dataset}.t` (x NOT_A_TYPE);\n")
    with pytest.raises(DdlError, match=r"00_bad\.sql#1 failed"):
        apply_ddl(project=PROJECT, dataset="bad", emulator=bigquery_emulator.host_port, ddl_dir=tmp_path)


def test_real_bigquery_without_credentials_says_how_to_log_in(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # no metadata server probe: fail at once
    with pytest.raises(SystemExit) as exit_info:
        main(["bq", "apply", "--bigquery", "--project", "my-proj"])
    assert exit_info.value.code == 2
    assert "gcloud auth application-default login" in capsys.readouterr().err
