"""What `workbench backfill` does once its options are read: check them, set local mode up
(workbench.pipeline_run.local_mode, the stream's own), run the backfill launcher with the live view, and say how
it ended.

    status = run_backfill(BackfillSettings("s3://workbench-history/exports", dataset=""))  # the exit status

Exit statuses (the command's): 0 done; 1 some objects could not be read (everything else was backfilled);
problems a user can fix raise WorkbenchError (exit 2), a --since/--until Beam cannot read raises click's
BadParameter (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from eventmodel.resources import DATASET, DEAD_LETTER_TOPIC, DEFAULT_PROJECT
from pipeline.runners import DATAFLOW, DIRECT
from workbench import terminal
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from endpoints import Endpoints


@dataclass(frozen=True)
class BackfillSettings:
    """The options of `workbench backfill`, as the command read them."""

    history_uri: str
    since: str | None = None
    until: str | None = None
    output_root: str = "./output"
    dataset: str = DATASET
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    runner: str = DIRECT
    project: str | None = None
    region: str | None = None
    temp_location: str | None = None
    aws_credentials_secret: str | None = None
    emulator: str | None = None
    bigquery_emulator: str | None = None
    sink_retry_seconds: float = 300.0
    dry_run: bool = False
    beam_args: tuple[str, ...] = ()


def run_backfill(s: BackfillSettings) -> int:
    """Backfill as `s` says; the exit status."""
    from eventmodel.resources import resolve_project
    from workbench.pipeline_run.backfill_launcher import backfill

    check_values(s)
    project = resolve_project(s.project, DEFAULT_PROJECT)
    args = ["--runner", s.runner, "--project", project, "--history_uri", s.history_uri,
            "--output_root", s.output_root, "--dataset", s.dataset, "--dead_letter_topic", s.dead_letter_topic,
            "--sink_retry_seconds", f"{s.sink_retry_seconds:f}"]  # fmt: skip
    given = (("--since", s.since), ("--until", s.until), ("--aws_credentials_secret", s.aws_credentials_secret))
    args += [a for flag, value in given if value for a in (flag, value)]
    if s.runner == DATAFLOW:
        args += [a for flag, value in (("--region", s.region), ("--temp_location", s.temp_location)) if value
                 for a in (flag, value)]  # fmt: skip
        if s.dry_run:
            args.append("--dry_run=True")
        result = backfill(args + list(s.beam_args))
        terminal.success(f"Dataflow: {result.job or result.state}")
        return 0
    return _here(s, project, args)


def check_values(s: BackfillSettings) -> None:
    """Refuse, in the command's words, what no backfill can use."""
    from pipeline.options import TIMESTAMP

    for flag, value in (("--since", s.since), ("--until", s.until)):
        if value:
            try:
                TIMESTAMP(value)
            except Exception as exc:
                raise click.BadParameter(str(exc), param_hint=flag) from None
    if not s.dataset and not s.dead_letter_topic:
        raise WorkbenchError(
            "--dataset '' and --dead-letter-topic '' leave the dead letters nowhere: a rejected record would be lost",
            "keep the dead_letters table (a --dataset) or a --dead-letter-topic",
        )


def local_backfill_endpoints(s: BackfillSettings) -> Endpoints:
    """The emulators a local backfill uses, each refused with the fix when it is needed and unknown."""
    from workbench.localstack.stack import local_endpoints

    local = local_endpoints(s.emulator, s.bigquery_emulator)
    if s.dataset and not local.bigquery:
        raise WorkbenchError(
            "no BigQuery emulator is known for --dataset " + s.dataset,
            "start the local stack (`workbench up`), pass --bigquery-emulator, or --dataset ''",
        )
    if s.dead_letter_topic and not local.pubsub:
        raise WorkbenchError(
            "no Pub/Sub emulator is known for the dead-letter topic",
            "start the local stack (`workbench up`), pass --emulator, or --dead-letter-topic ''",
        )
    return local


def _here(s: BackfillSettings, project: str, args: list[str]) -> int:
    from workbench.backfill_view import BackfillView, figures, summary
    from workbench.pipeline_run.backfill_launcher import backfill
    from workbench.pipeline_run.local_mode import enter_local_mode

    local = local_backfill_endpoints(s)
    enter_local_mode(local, s.output_root, history_uri=s.history_uri)
    if s.dataset:
        args += ["--bigquery_emulator_host", local.bigquery]  # type: ignore[list-item]
    sinks = s.output_root + (f", BigQuery {project}.{s.dataset}" if s.dataset else "")
    terminal.info("backfilling on Beam's embedded runner")
    with BackfillView(s.history_uri, sinks) as view:
        result = backfill(args + list(s.beam_args), on_progress=view.update)
    for table in summary(result.counts):
        terminal.console.print(table)
    if result.state != "DONE":
        raise WorkbenchError(
            f"the backfill ended {result.state}", "see the errors above; a rerun adds only what is missing"
        )
    unreadable = figures(result.counts)["unreadable objects"]
    if unreadable:
        terminal.error(
            f"{unreadable} objects could not be read (SOURCE_UNREADABLE dead letters name them and say why); "
            "everything else was backfilled",
            "fix the access (s3:GetObject) and run the same backfill again: it adds only what is missing",
        )
        return 1
    terminal.success(f"backfill done in {result.elapsed:,.1f} s; check it: workbench reconcile RUN_ID")
    return 0
