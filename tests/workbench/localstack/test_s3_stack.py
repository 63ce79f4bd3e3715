"""`workbench up --s3`, `env` and `down` with moto's S3 server: a real process on a loopback port, the history
bucket created at start, the AWS variables exported, everything stopped by `down`."""

from __future__ import annotations

import pytest

from endpoints.s3 import s3_client
from eventmodel import resources as names
from workbench.cli import cli
from workbench.localstack import processes, stack
from workbench.localstack.ports import free_port, port_in_use

pytestmark = pytest.mark.integration


def test_up_s3_starts_the_server_with_the_history_bucket_and_is_idempotent(home):
    cfg = stack.StackConfig(pubsub_port=free_port(), s3_port=free_port(), with_bigquery=False, with_s3=True)
    stack.up(cfg)
    state = stack.read_state()["services"]
    assert set(state) == {"pubsub", "s3"}
    assert state["s3"]["host"] == "127.0.0.1"
    endpoint = f"http://127.0.0.1:{cfg.s3_port}"
    assert stack.env_exports()["AWS_ENDPOINT_URL"] == endpoint
    assert stack.local_endpoints().s3 == endpoint
    s3 = s3_client(endpoint)
    assert names.HISTORY_BUCKET in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    s3.put_object(Bucket=names.HISTORY_BUCKET, Key="kept", Body=b"1")

    pid = state["s3"]["pid"]
    stack.up(cfg)  # again: the running server and its objects are left alone
    assert stack.read_state()["services"]["s3"]["pid"] == pid
    assert s3.get_object(Bucket=names.HISTORY_BUCKET, Key="kept")["Body"].read() == b"1"

    assert sorted(stack.down()) == ["pubsub", "s3"]
    assert processes.command_line(pid) is None
    assert not port_in_use("127.0.0.1", cfg.s3_port)


def test_cli_up_s3_env_exports_the_aws_variables_and_down_stops_it(home, cli_runner):
    pubsub_port, s3_port = free_port(), free_port()
    runner = cli_runner
    result = runner.invoke(
        cli, ["up", "--s3", "--no-bigquery", "--pubsub-port", str(pubsub_port), "--s3-port", str(s3_port)]
    )
    assert result.exit_code == 0, result.output
    assert names.HISTORY_BUCKET in result.output
    result = runner.invoke(cli, ["env"])
    assert result.exit_code == 0
    for line in (
        f"export AWS_ENDPOINT_URL=http://127.0.0.1:{s3_port}",
        "export AWS_ACCESS_KEY_ID=testing",
        "export AWS_SECRET_ACCESS_KEY=testing",  # the placeholder, not a secret: eval must give boto3 all it needs
        "export AWS_DEFAULT_REGION=us-east-1",
    ):
        assert line in result.output.splitlines(), result.output
    result = runner.invoke(cli, ["down"])
    assert result.exit_code == 0
    assert "stopped s3" in result.output
    assert stack.env_exports() == {}
    assert not port_in_use("127.0.0.1", s3_port)


def test_env_still_masks_real_aws_keys(monkeypatch, cli_runner):
    """Only the local placeholders are printed in clear; a real key under the same names stays masked."""
    from workbench.cli.stack import env
    from workbench.redact import MASK

    real = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY"}
    monkeypatch.setattr(stack, "env_exports", lambda: {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", **real})
    output = cli_runner.invoke(env).output
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:5000" in output
    for key, value in real.items():
        assert value not in output
        assert f"# {key}={MASK}" in output


def test_the_s3_port_defaults_to_motos_own():
    assert stack.StackConfig().s3_port == names.S3_SERVER_PORT == 5000
    assert "s3" not in {s.name for s in stack.StackConfig().services()}  # only with --s3
