"""workbench.output_root: an output root that would not write where the user meant is refused, with the fix."""

from __future__ import annotations

import click
import pytest

from workbench.output_root import OutputRootError, check_output_root, output_root_option


@pytest.mark.parametrize(
    "root",
    ["./output", "output", "/tmp/events", "out/run:1", "./gs:/bucket", "gs://bucket", "gs://bucket/prefix/deep",
     "gs://my-bucket.example/x"],
)  # fmt: skip
def test_local_folders_and_gs_urls_pass_unchanged(root):
    assert check_output_root(root) == root


@pytest.mark.parametrize(
    ("root", "says", "fix"),
    [
        ("gs:/bucket", "gs:/bucket looks like a GCS URL with one slash", "write --output-root gs://bucket"),
        ("gs:/bucket/out", "with one slash", "write --output-root gs://bucket/out"),
        ("gs:bucket", "with no slash", "write --output-root gs://bucket"),
        ("gs:///bucket", "with 3 slashes", "write --output-root gs://bucket"),
        ("gcs://bucket/out", "gcs:// is not a scheme Beam knows", "write --output-root gs://bucket/out"),
        ("GS://bucket", "GS:// is not a scheme Beam knows", "write --output-root gs://bucket"),
        ("gcs:/bucket", "misspelt GCS URL", "write --output-root gs://bucket"),
        ("s3:/bucket", "looks like an S3 URL", "gs://BUCKET/PREFIX"),
        ("s3://bucket/out", "local folder or to Cloud Storage (gs://) only", "gs://BUCKET/PREFIX"),
        ("hdfs://namenode/out", "an HDFS URL", "gs://BUCKET/PREFIX"),
        ("file:///tmp/out", "is a file URL", "write --output-root /tmp/out"),
        ("data:2025", "scheme data", "--output-root ./data:2025"),
        ("gs://", "names no bucket", "gs://BUCKET/PREFIX"),
        ("", "is empty", "--output-root ./output"),
    ],
)
def test_misspelt_roots_are_refused_with_what_to_write(root, says, fix):
    with pytest.raises(OutputRootError) as refused:
        check_output_root(root)
    assert says in refused.value.message, refused.value.message
    assert fix in refused.value.fix, refused.value.fix


def test_an_unexpanded_tilde_is_refused_with_both_spellings_that_work():
    with pytest.raises(OutputRootError) as refused:
        check_output_root("~/out")
    assert "~ is not expanded inside --output-root=~/out" in refused.value.message
    assert "folder named ~" in refused.value.message
    assert refused.value.fix == "write --output-root ~/out (with a space) or --output-root $HOME/out"
    with pytest.raises(OutputRootError) as refused:
        check_output_root("~alice/out", option="--out")
    assert "folder named ~alice" in refused.value.message and "--out ~alice/out (with a space)" in refused.value.fix


def test_the_click_callback_makes_it_a_usage_error_naming_the_option(cli_runner):
    @click.command()
    @click.option("--output-root", default="./output", callback=output_root_option)
    def command(output_root):
        click.echo(f"root={output_root}")

    refused = cli_runner.invoke(command, ["--output-root", "gs:/bucket"])
    assert refused.exit_code == 2
    assert "Invalid value for '--output-root': gs:/bucket looks like a GCS URL with one slash" in refused.output
    assert "write --output-root gs://bucket" in refused.output
    accepted = cli_runner.invoke(command, [])
    assert accepted.exit_code == 0 and "root=./output" in accepted.output


@pytest.mark.parametrize("command", [["run-pipeline"], ["backfill", "s3://workbench-history/exports"]])
def test_run_pipeline_and_backfill_refuse_a_misspelt_root_as_a_usage_error(command, tmp_path, monkeypatch, cli_runner):
    from workbench.cli import cli

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    result = cli_runner.invoke(cli, [*command, "--output-root", "gcs://bucket/out"])
    assert result.exit_code == 2, result.output
    assert "gcs:// is not a scheme Beam knows" in result.output and "gs://bucket/out" in result.output
    assert not [path for path in tmp_path.iterdir() if path.name != "home"], "no folder named after the typo"


@pytest.mark.parametrize("command", [["run-pipeline"], ["backfill", "s3://workbench-history/exports"]])
def test_a_local_run_to_gs_without_the_gcs_emulator_is_refused_by_both(command, home, monkeypatch, cli_runner):
    """Local mode gives Beam's gs:// filesystem anonymous credentials (pipeline_run/local_mode.py): real Cloud
    Storage would refuse every write, so the stream and the backfill both refuse before reading anything."""
    from workbench.cli import cli
    from workbench.errors import WorkbenchError

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.chdir(home)
    known = ["--emulator", "127.0.0.1:9", "--bigquery-emulator", "127.0.0.1:9"]
    result = cli_runner.invoke(cli, [*command, *known, "--output-root", "gs://bucket/out"])
    refused = result.exception  # `workbench` (cli.main) prints it and exits 2
    assert isinstance(refused, WorkbenchError), result.output
    assert refused.message == "--output-root gs://bucket/out needs the GCS emulator in local mode"
    assert "workbench up --gcs" in refused.fix
    assert not (home / "bucket").exists() and "PUBSUB_EMULATOR_HOST" not in result.output
