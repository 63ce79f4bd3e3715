"""Option types every command shares, so one kind of value is written the same way everywhere.

DURATION: every time option (--duration, --stop-when-idle, --wait, --max-lateness, --run-time ...) accepts what
publisher.rate.parse_duration reads: 90, 90s, 5m, 1h, 1m30s, 2.5s.
"""

from __future__ import annotations

import sys

import click

from publisher.rate import parse_duration


class Duration(click.ParamType):
    """Seconds, written as 90, 90s, 5m, 1h or 1m30s; a float of seconds reaches the command."""

    name = "duration"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


# --engine, as reconcile and check spell it (reconcile.run.ReconcileTarget.engine).
ENGINE = click.option(
    "--engine",
    type=click.Choice(["auto", "duckdb", "bigquery"]),
    default="auto",
    show_default=True,
    help="Where the comparison runs: auto = inside BigQuery for real BigQuery, DuckDB on the local stack.",
)


def exit_with(status: int) -> None:
    """End a command with the exit status its library function returned: 0 returns normally, so that a caller of
    `cli.main(standalone_mode=False)` sees no SystemExit for a success."""
    if status:
        sys.exit(status)


def given_options() -> frozenset[str]:
    """The options of the running command that the user typed (neither defaults nor the environment)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return frozenset(name for name in ctx.params if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE)


def positive(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A callback for a number that must be more than 0."""
    if value is not None and value <= 0:
        raise click.BadParameter("must be more than 0", param_hint=param.opts[0])
    return value
