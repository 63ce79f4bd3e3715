"""Fixtures for the foreign pipelines (flattened.py, whole_event.py, buggy.py): each run as a user runs a pipeline
of their own on the local stack.

    workbench up --gcs                       # in a tmp WORKBENCH_HOME, on free ports
    bq mk --dataset <dataset>                # the user's one setup step (done here with the Python client)
    workbench publish --count N ...          # the run
    workbench exec --stop-when-idle 5s -- python tests/foreign_pipelines/X.py --streaming ...

`workbench exec` finds the stack through WORKBENCH_HOME's state file, so the stack is started with the CLI rather than
with tests/conftest.py's standalone emulators (those leave no state file for exec to find). One stack serves the
session (a reconcile test module beside this one reuses the same runs); each pipeline has its own dataset and output
root, and its run drains the subscription before the next one publishes.

Each `*_run` fixture yields a ForeignRun: run_id, output root, dataset, the contract rendered with this run's
places (`contract`), and what a reconcile needs (`env`, `workbench(...)`), e.g.

    verdict = flattened_run.workbench("reconcile", flattened_run.run_id, "--sinks", str(flattened_run.contract),
                                      "--dataset", flattened_run.dataset, "--output-root", flattened_run.output_root)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from foreign_support import (
    BUGGY_KINDS,
    LOCAL_TZ,
    ForeignRun,
    every_kind_weights,
    make_dataset,
    manifest_lines,
    publish,
    render_contract,
    run_pipeline,
)
from stack_support import BUCKET, Stack

from workbench.localstack.ports import free_port, free_port_pair


@pytest.fixture(scope="session")
def foreign_stack(tmp_path_factory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("foreign-home")
    stack = Stack(home, free_port_pair(), free_port_pair(), free_port())
    up = stack.workbench("up", "--gcs", "--pubsub-port", str(stack.pubsub_port), "--bigquery-port",
                         str(stack.bigquery_port), "--gcs-port", str(stack.gcs_port))  # fmt: skip
    assert up.returncode == 0, up.text[-3000:]
    env = stack.workbench("env")
    assert env.returncode == 0, env.text[-2000:]
    stack.exports = dict(
        line.removeprefix("export ").split("=", 1) for line in env.stdout.splitlines() if line.startswith("export ")
    )
    try:
        yield stack
    finally:
        stack.workbench("down", timeout=120)


@pytest.fixture(scope="session")
def flattened_run(foreign_stack, tmp_path_factory) -> ForeignRun:
    """300 messages through flattened.py: 10% malformed of every kind (bodies that are not UTF-8 weighted up, so the
    base64 dead letters show), 5% duplicates, 30% late events (up to 10 minutes)."""
    folder = tmp_path_factory.mktemp("flattened")
    dataset, root = "flat", str(folder / "output")
    make_dataset(foreign_stack, dataset)
    kinds = every_kind_weights(cp1252_encoded=8, utf16_encoded=8)
    run_id = publish(foreign_stack, 300, 200, "--malformed-rate", "0.1", "--malformed-kinds", kinds, "--duplicate-rate",
                     "0.05", "--late-rate", "0.3", "--max-lateness", "10m", "--seed", "11")  # fmt: skip
    done = run_pipeline(foreign_stack, "flattened.py", "--dataset", dataset, "--output", root,
                        "--temp_location", str(folder / "tmp"), "--window_seconds", "5")  # fmt: skip
    assert done.returncode == 0, done.text[-4000:]
    contract = render_contract("flattened", folder / "flattened.sinks.yaml", dataset, root, None)
    return ForeignRun(foreign_stack, "flattened", run_id, dataset, root, contract, None, done,
                      manifest_lines(foreign_stack.home, run_id))  # fmt: skip


@pytest.fixture(scope="session")
def whole_event_run(foreign_stack, tmp_path_factory) -> ForeignRun:
    """300 messages (10% malformed, 10% duplicates) through whole_event.py, files in the GCS emulator."""
    folder = tmp_path_factory.mktemp("whole-event")
    dataset, root, rejected = "raw", f"gs://{BUCKET}/raw", f"gs://{BUCKET}/rejected"
    make_dataset(foreign_stack, dataset)
    run_id = publish(foreign_stack, 300, 200, "--malformed-rate", "0.1", "--duplicate-rate", "0.1", "--seed", "12")
    done = run_pipeline(foreign_stack, "whole_event.py", "--dataset", dataset, "--output", root, "--dead_letters",
                        rejected, "--temp_location", str(folder / "tmp"), "--load_seconds", "5")  # fmt: skip
    assert done.returncode == 0, done.text[-4000:]
    contract = render_contract("whole_event", folder / "whole_event.sinks.yaml", dataset, root, rejected)
    return ForeignRun(foreign_stack, "whole_event", run_id, dataset, root, contract, rejected, done,
                      manifest_lines(foreign_stack.home, run_id))  # fmt: skip


@pytest.fixture(scope="session")
def buggy_run(foreign_stack, tmp_path_factory) -> ForeignRun:
    """200 messages at 50/s (10% malformed, 10% duplicates) through buggy.py, run with TZ=Asia/Kolkata."""
    folder = tmp_path_factory.mktemp("buggy")
    dataset, root = "buggy", str(folder / "output")
    make_dataset(foreign_stack, dataset)
    run_id = publish(foreign_stack, 200, 50, "--malformed-rate", "0.1", "--duplicate-rate", "0.1",
                     "--malformed-kinds", BUGGY_KINDS, "--seed", "13")  # fmt: skip
    done = run_pipeline(foreign_stack, "buggy.py", "--dataset", dataset, "--output", root, env={"TZ": LOCAL_TZ})
    assert done.returncode == 0, done.text[-4000:]
    contract = render_contract("buggy", folder / "buggy.sinks.yaml", dataset, root, None)
    return ForeignRun(foreign_stack, "buggy", run_id, dataset, root, contract, None, done,
                      manifest_lines(foreign_stack.home, run_id))  # fmt: skip
