"""`workbench loadtest`: the Locust load test, headless, with reports and a reconcilable run manifest."""

from __future__ import annotations

import click

from eventmodel import resources as names
from workbench import terminal
from workbench.cli.params import DURATION
from workbench.output_root import output_root_option


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--users", type=int, default=10, show_default=True, help="Locust users at the peak.")
@click.option("--spawn-rate", type=float, default=10.0, show_default=True, help="Users started per second.")
@click.option("--run-time", type=DURATION, default="30s", show_default=True, help="How long: 30s, 5m, 1h, 1m30.")
@click.option("--shape", type=click.Choice(["steady", "step", "ramp", "spike"]), default="steady", show_default=True,
              help="Users over time, as `workbench publish --profile`.")  # fmt: skip
@click.option("--workers", type=int, default=0, show_default=True,
              help="0: one Locust process; N: a master and N worker processes on this machine.")  # fmt: skip
@click.option("--batch-size", type=int, default=20, show_default=True,
              help="Messages per batch, sent in Publish requests of at most 1,000 messages and 10 MB.")  # fmt: skip
@click.option("--user-rate", type=float, default=0.0, show_default=True,
              help="Batches per second per user; 0 publishes as fast as the server confirms.")  # fmt: skip
@click.option("--malformed-rate", type=float, default=0.05, show_default=True, help="Share of malformed messages.")
@click.option("--duplicate-rate", type=float, default=0.01, show_default=True, help="Share of exact re-sends.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--run-id", help="Name the run (default: time-stamped).")
@click.option("--topic", default=names.TOPIC, show_default=True)
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--emulator", metavar="HOST:PORT", help="Pub/Sub emulator (else PUBSUB_EMULATOR_HOST or the stack).")
@click.option("--reconcile", "then_reconcile", is_flag=True,
              help="Then reconcile the run (waiting up to 60 s for a pipeline that is running to drain).")  # fmt: skip
@click.option("--output-root", default="./output", show_default=True, callback=output_root_option,
              help="--reconcile: the GCS tree the pipeline writes (a directory or gs://...).")  # fmt: skip
@click.argument("locust_args", nargs=-1, type=click.UNPROCESSED)
def loadtest(users, spawn_rate, run_time, shape, workers, batch_size, user_rate, malformed_rate, duplicate_rate, seed,
             run_id, topic, project, emulator, then_reconcile, output_root, locust_args):  # fmt: skip
    """Run the Locust load test against the local stack (or real Pub/Sub) and record a reconcilable run.

    Further flags go to Locust (the local process, or the master; workers take their settings from it).
    Reports: $WORKBENCH_HOME/runs/RUN_ID/locust.html and locust_*.csv.

    \b
    workbench loadtest --users 50 --spawn-rate 10 --run-time 60s
    workbench loadtest --users 100 --workers 2 --shape spike --reconcile
    """
    from eventmodel.resources import resolve_project
    from publisher.manifest import run_dir
    from workbench import extras
    from workbench.loadtest_run import LoadtestOptions, run_loadtest
    from workbench.localstack.stack import local_endpoints

    extras.require("loadtest", "`workbench loadtest`")  # before anything is printed or started
    endpoint = local_endpoints(pubsub=emulator).pubsub
    # Locust reads whole seconds written 20, 20s or 1h20m: every duration this CLI accepts, in a form it reads.
    run_time = f"{max(1, round(run_time))}s"
    options = LoadtestOptions(users, spawn_rate, run_time, shape, workers, batch_size, user_rate, malformed_rate,
                              duplicate_rate, seed, run_id, topic, resolve_project(project, names.DEFAULT_PROJECT),
                              endpoint, list(locust_args))  # fmt: skip
    where = f"emulator {endpoint}" if endpoint else "real Pub/Sub (Application Default Credentials)"
    terminal.info(f"Locust: {users} users, {shape}, {run_time}, {workers or 'no'} workers, to {topic} on {where}")
    run_id, code = run_loadtest(options)
    folder = run_dir(run_id)
    terminal.info(f"reports: {folder / 'locust.html'} and {folder}/locust_stats.csv; manifest: {folder}")
    if code != 0:
        terminal.warning("Locust saw failures (see the statistics above); reconcile tells what reached the sinks")
    if not then_reconcile:
        terminal.info(
            f"check it end to end once the pipeline has drained: workbench reconcile {run_id} --wait 60"
            + ("" if output_root == "./output" else f" --output-root {output_root}")
        )
        raise SystemExit(code)
    from workbench.reconcile_run import run_reconcile

    report = run_reconcile(run_id, output_root=output_root, project=options.project, wait_s=60)
    raise SystemExit(report.exit_code)
