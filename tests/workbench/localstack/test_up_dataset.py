"""`workbench up --dataset NAME`: the empty datasets a user's pipeline writes into (Beam's CREATE_IF_NEEDED creates
tables, never their dataset), made beside the workbench's own, idempotently; names BigQuery would refuse are refused
before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from endpoints.bigquery import bigquery_client
from eventmodel import resources as names
from workbench.localstack import stack
from workbench.localstack.ports import free_port_pair

pytestmark = pytest.mark.integration


def _datasets(cfg: stack.StackConfig) -> set[str]:
    client = bigquery_client(cfg.project, f"{cfg.host}:{cfg.bigquery_port}", "US")
    try:
        return {d.dataset_id for d in client.list_datasets(cfg.project)}
    finally:
        client.close()


def test_up_creates_each_dataset_empty_and_keeps_one_that_exists(home):
    cfg = stack.StackConfig(pubsub_port=free_port_pair(), bigquery_port=free_port_pair(), datasets=("shop", "shop_dl"))
    stack.up(cfg)
    assert {"shop", "shop_dl", names.DATASET} <= _datasets(cfg)
    client = bigquery_client(cfg.project, f"{cfg.host}:{cfg.bigquery_port}", "US")
    try:
        assert not list(client.list_tables(f"{cfg.project}.shop"))  # empty: the workbench's tables stay in its own
        from google.cloud import bigquery

        client.create_table(bigquery.Table(f"{cfg.project}.shop.orders", [bigquery.SchemaField("id", "STRING")]))
        stack.up(cfg)  # again: the dataset exists, its table is kept
        assert [t.table_id for t in client.list_tables(f"{cfg.project}.shop")] == ["orders"]
    finally:
        client.close()


def _workbench(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home"), "NO_GCE_CHECK": "true", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--dataset", "my-shop"), "'my-shop' is not a BigQuery dataset name"),
        (("--dataset", "shop", "--no-bigquery"), "--dataset shop needs the BigQuery emulator"),
    ],
)
def test_a_dataset_bigquery_cannot_have_is_refused_before_anything_starts(tmp_path, args, said):
    try:
        done = _workbench(tmp_path, "up", "--pubsub-port", str(free_port_pair()), *args)
        assert done.returncode == 2, done.stdout + done.stderr
        text = " ".join((done.stdout + done.stderr).split())
        assert said in text and "fix:" in text
        assert not (tmp_path / "home" / "stack" / "state.json").exists()  # nothing was started
    finally:
        _workbench(tmp_path, "down")  # what a failed refusal started
