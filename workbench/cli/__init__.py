"""`workbench`: the command line. One command per module in this package; each is a thin click function
over library code. Commands are imported lazily so that `workbench --help` never pays for Beam or gRPC.

To add a command: write workbench/cli/<name>.py exposing a click command or group, and add one line to
COMMANDS below.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from endpoints.errors import FixableError
from eventmodel.resources import HOME_ENV_VAR, workbench_home

# command name -> "module:attribute"; one line per command.
COMMANDS: dict[str, str] = {
    "bq": "workbench.cli.bq:bq",
    "publish": "workbench.cli.publish:publish",
    "runs": "workbench.cli.runs:runs",
    "up": "workbench.cli.stack:up",
    "down": "workbench.cli.stack:down",
    "status": "workbench.cli.stack:status",
    "env": "workbench.cli.stack:env",
    "run-pipeline": "workbench.cli.pipeline:run_pipeline",
    "backfill": "workbench.cli.backfill:backfill",
    "emulator": "workbench.cli.emulator:emulator",
    "reconcile": "workbench.cli.reconcile:reconcile",
    "demo": "workbench.cli.demo:demo",
    "loadtest": "workbench.cli.loadtest:loadtest",
    "exec": "workbench.cli.exec:exec_command",
    "sinks": "workbench.cli.sinks:sinks",
    "check": "workbench.cli.check:check",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if args and args[0] not in COMMANDS:
                close = _closest(args[0], COMMANDS)
                hint = f" Did you mean `workbench {close}`?" if close else ""
                raise click.UsageError(f"No such command '{args[0]}'.{hint}", ctx) from exc
            raise


def _closest(word: str, choices) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, list(choices), n=1)
    return found[0] if found else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="event-workbench")
def cli() -> None:
    """Event Workbench: load and correctness testing for Pub/Sub -> Beam -> GCS + BigQuery."""


def _strict_rules_from_the_ddl() -> None:
    """A user's WORKBENCH_BIGQUERY_STRICT=1 holds reads to the DDL's partition rules, as the test suite's does: the
    rules live in ddl/, above the client factory that checks them (endpoints.bigquery_strict), so they are handed
    down here, once, through the environment every child process (the pipeline) inherits."""
    from endpoints.bigquery_strict import RULES_ENV, strict_enabled

    if strict_enabled() and not os.environ.get(RULES_ENV):
        import json

        from ddl.model import partition_rules

        os.environ[RULES_ENV] = json.dumps(partition_rules())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: a user error (WorkbenchError, or a library's own) becomes a two-line message
    and exit status 2.

    Log records of every library are masked like the terminal's messages (workbench.redact).
    """
    from workbench import terminal
    from workbench.redact import redact_logging

    redact_logging()
    # The home is resolved once, here: every child process (the pipeline, Locust, the emulators) inherits the same
    # absolute path whatever folder it runs in.
    os.environ[HOME_ENV_VAR] = str(workbench_home())
    _strict_rules_from_the_ddl()

    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        terminal.error("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except FixableError as exc:  # the CLI's own WorkbenchError, or a library's error of the same shape
        terminal.error(exc.message, exc.fix)
        sys.exit(2)
