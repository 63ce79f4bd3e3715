"""The backfill's Flex Template entry point: the launcher runs this file with the template's parameters as flags
(FLEX_TEMPLATE_PYTHON_PY_FILE of the Dockerfile's `backfill` stage; backfill_metadata.json declares them).

Beside main.py, outside the pipeline package, for main.py's reason. It returns once the job is submitted and never
waits for the job: the Flex Template launcher must exit after `run` ("Use Flex Templates to package a Dataflow
pipeline", cloud.google.com/dataflow/docs/guides/templates/configuring-flex-templates), whereas
`python -m pipeline.backfill` waits, for local runs.
"""

import logging
from collections.abc import Sequence

from pipeline.backfill import run
from pipeline.runners import DATAFLOW


def launch(argv: Sequence[str] | None = None):
    return run(argv, default_runner=DATAFLOW)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    launch()
