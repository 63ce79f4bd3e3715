"""The runners the workbench names, once, and the local one it runs on.

`DIRECT` and `DATAFLOW` are the `--runner` values the launchers, the CLI and the Flex Templates compare and pass.

`local_runner()` is Beam's DirectRunner as this project runs it: without its first try on Prism. Beam 2.77's
DirectRunner (SwitchingDirectRunner) hands every pipeline Prism supports to Prism first, which it downloads from
GitHub; offline the download fails and the DirectRunner falls back to the FnApiRunner (batch) or the
BundleBasedDirectRunner (streaming). Each try left a `beam-temp*` folder in the system temp folder (the Prism job
server's, made before the download and removed only by a stop that never comes), so every local backfill and
every batch test pipeline left one. The runner returned here goes straight to that fallback: the same runners,
on or off the network, no download and nothing left behind.
"""

from __future__ import annotations

from typing import Any

DIRECT = "DirectRunner"
DATAFLOW = "DataflowRunner"
RUNNERS = (DIRECT, DATAFLOW)


def local_runner() -> Any:
    """Beam's DirectRunner (FnApiRunner for a batch pipeline it can run, else the BundleBasedDirectRunner), never
    Prism. tests/pipeline/test_local_runner.py pins it: nothing is left in the temp folder, Prism is not tried."""
    from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner

    runner = SwitchingDirectRunner()
    # Public, and in Beam 2.77 its only effect is to keep Prism out (direct_runner.py, _PrismRunnerSupportVisitor:
    # "Prism currently does not support interactive mode"); the FnApiRunner / BundleBasedDirectRunner switch is
    # untouched.
    runner.is_interactive()
    return runner


def runner_for(name: str | None) -> Any:
    """What beam.Pipeline(runner=...) is given for a --runner: local_runner() for the DirectRunner, else None (Beam
    makes the named runner itself)."""
    return local_runner() if name in (None, DIRECT) else None
