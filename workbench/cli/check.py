"""`workbench check`: the standard battery against any pipeline; a scorecard, and a CI gate (workbench.check_run)."""

from __future__ import annotations

from pathlib import Path

import click

from battery.scenarios import SCENARIOS
from workbench.cli.params import DURATION, ENGINE
from workbench.output_root import output_root_option

_SCENARIO_HELP = "; ".join(f"{s.name}: {s.summary}" for s in SCENARIOS)


@click.command()
@click.option("--sinks", "sinks_path", type=click.Path(path_type=Path),
              help="Your pipeline's sink contract (`workbench sinks init` drafts one). Default: this project's "
              "pipeline.")  # fmt: skip
@click.option("--pipeline", metavar="COMMAND",
              help='Start this pipeline through `workbench exec` (local stack), e.g. "python my_pipeline.py '
              '--streaming"; drained and stopped at the end. Without it, a pipeline already running elsewhere '
              "(Dataflow, another terminal) is judged.")  # fmt: skip
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME",
              help=f"Run only these scenarios (repeat the option). Default: all. {_SCENARIO_HELP}.")  # fmt: skip
@click.option("--rate", type=float, default=500.0, show_default=True,
              help="The steady rate, messages/s (the burst is 10x).")  # fmt: skip
@click.option("--duration", "duration_s", type=DURATION, default="60s", show_default=True, metavar="DURATION",
              help="How long the steady scenario publishes.")  # fmt: skip
@click.option("--burst-for", "burst_s", type=DURATION, default="10s", show_default=True, metavar="DURATION",
              help="How long the burst lasts.")  # fmt: skip
@click.option("--repeats", type=int, default=3, show_default=True,
              help="How many times the malformed scenario sends each kind of the catalogue.")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), metavar="N",
              help="Same seed, same battery. Default: a new one each check, printed (a pipeline that keeps "
              "no ids of ours tells events apart by content, which a second battery of one seed repeats).")  # fmt: skip
@click.option("--latency-budget", type=DURATION, default="60s", show_default=True, metavar="DURATION",
              help="The p95 publish -> sink latency each scenario must stay within.")  # fmt: skip
@click.option("--drain-budget", type=DURATION, default="60s", show_default=True, metavar="DURATION",
              help="How soon after the burst its last event must have landed in every sink.")  # fmt: skip
@click.option("--wait", "wait_s", type=DURATION, default="10m", show_default=True, metavar="DURATION",
              help="How long the sinks may take to settle after the publish.")  # fmt: skip
@click.option("--stop-when-idle", "idle_s", type=DURATION, default="15s", show_default=True, metavar="DURATION",
              help="--pipeline: it drains and ends after this long without a message.")  # fmt: skip
@click.option(
    "--output-root",
    callback=output_root_option,
    help="The GCS tree, when not the contract's (default ./output for this pipeline).",
)
@click.option("--dataset", help="The BigQuery dataset, when not the contract's.")
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--emulator", metavar="HOST:PORT", help="Pub/Sub emulator address (else $PUBSUB_EMULATOR_HOST).")
@click.option("--allow-foreign", is_flag=True, help="Events of no known run (other producers) do not fail the check.")
@ENGINE
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the scorecard and the reconcile.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), help="Write a visual report with plots.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path),
              help="Write JUnit XML: a testcase per property per scenario, for CI.")  # fmt: skip
def check(**options):
    """Throw the standard battery at a pipeline and score it: exit 0 every property holds, 1 one does not, 2 the
    check could not run.

    \b
    workbench check                                                    # this project's pipeline, running
    workbench check --sinks my.sinks.yaml --pipeline "python my_pipeline.py --streaming" --junit check.xml
    workbench check --scenario late --scenario burst --html check.html
    workbench check --sinks my.sinks.yaml --project P --output-root gs://B/out   # your pipeline on Dataflow
    """
    from workbench.check_run import check_options, run_check
    from workbench.check_view import TerminalCheckView

    raise SystemExit(run_check(check_options(**options), TerminalCheckView()))
