"""No credential or token is ever printed: messages through the terminal facade mask secret-looking values,
and `workbench env` never prints a secret-looking variable in clear."""

from __future__ import annotations

import pytest

from workbench import terminal
from workbench.errors import WorkbenchError
from workbench.redact import MASK, masked_value, redact

SECRETS = {
    "Authorization: Bearer ya29.a0AfH6SMBx3-very-secret": "ya29.a0AfH6SMBx3-very-secret",
    "access_token=ya29.c.b0AXv0zTPq": "ya29.c.b0AXv0zTPq",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "key id AKIAIOSFODNN7EXAMPLE": "AKIAIOSFODNN7EXAMPLE",
    '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIB\\n-----END PRIVATE KEY-----\\n"}': "MIIEvQIB",
    "https://bob:hunter2hunter2@proxy.example.com:3128": "hunter2hunter2",
    "api_key=AIzaSyA-1234567890abcdefghijklmnopqrstu": "AIzaSyA-1234567890abcdefghijklmnopqrstu",
    "DB_PASSWORD: 's3cr3t-pass'": "s3cr3t-pass",
}


@pytest.mark.parametrize(("text", "secret"), SECRETS.items(), ids=range(len(SECRETS)))
def test_secret_values_are_masked(text, secret):
    shown = redact(text)
    assert secret not in shown
    assert MASK in shown


@pytest.mark.parametrize(
    "text",
    [
        "export PUBSUB_EMULATOR_HOST=127.0.0.1:8085",
        "GOOGLE_APPLICATION_CREDENTIALS=/home/me/key.json",
        "publish_failure_rate=0.2, lost_ack_rate=0.1",
        "no Google Cloud credentials found for real Pub/Sub",
        "page_token is empty",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == text


def test_an_error_quoting_a_token_prints_it_masked(capsys):
    terminal.error("refresh failed: Authorization: Bearer ya29.leaked-token-value", "token=ya29.again-leaked")
    err = capsys.readouterr().err
    assert "leaked" not in err
    assert err.count(MASK) == 2


def test_the_cli_masks_a_workbench_error_carrying_a_secret(capsys, monkeypatch):
    from workbench import cli

    def boom():
        raise WorkbenchError("cannot load s3://b/h with aws_secret_access_key=abcdEFGHijklMNOP", "rotate the key")

    monkeypatch.setattr(cli.cli, "main", lambda **_: boom())
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "abcdEFGHijklMNOP" not in err and MASK in err


def test_env_prints_addresses_and_masks_anything_secret(monkeypatch, cli_runner):
    from workbench.cli.stack import env
    from workbench.localstack import stack

    monkeypatch.setattr(
        stack,
        "env_exports",
        lambda: {"PUBSUB_EMULATOR_HOST": "127.0.0.1:8085", "SOME_SERVICE_TOKEN": "tok-12345678", "X": "y"},
    )
    result = cli_runner.invoke(env)
    assert result.exit_code == 0
    assert "export PUBSUB_EMULATOR_HOST=127.0.0.1:8085" in result.output
    assert "tok-12345678" not in result.output
    assert f"# SOME_SERVICE_TOKEN={MASK}" in result.output
    assert "export X=y" in result.output


def test_masked_value_by_name():
    assert masked_value("AWS_SECRET_ACCESS_KEY", "anything") == MASK
    assert masked_value("PUBSUB_PROJECT_ID", "workbench-local") == "workbench-local"


def test_log_records_of_any_library_are_masked(caplog):
    import logging

    from workbench.redact import redact_logging

    previous = logging.getLogRecordFactory()
    try:
        redact_logging()
        redact_logging()  # idempotent: one layer
        # apache_beam's own level too: `workbench run-pipeline`, run in-process by other tests, sets it to ERROR.
        with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="apache_beam"):
            logging.getLogger("google.auth.transport").info("headers: %s", {"authorization": "Bearer ya29.logged"})
            logging.getLogger("apache_beam").warning("Discarding unparseable args: ['--aws_secret=abcd1234efgh']")
            logging.getLogger("plain").info("published %d messages", 5)
    finally:
        logging.setLogRecordFactory(previous)
    text = caplog.text
    assert "ya29.logged" not in text and "abcd1234efgh" not in text
    assert text.count(MASK) == 2
    assert "published 5 messages" in text
