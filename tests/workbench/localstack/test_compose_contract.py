"""docker-compose.yml cannot run here (no Docker engine), so its structure and its contract with the embedded
stack are checked: same services, same loopback ports, same resource names, same environment exports."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from eventmodel import resources as names
from workbench.localstack import stack
from workbench.localstack.services import Service

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EMBEDDED = stack.StackConfig(with_gcs=True, with_s3=True).services()


def compose_text_of(service: str) -> str:
    spec = COMPOSE["services"][service]
    parts = [spec.get("command"), spec.get("entrypoint")]
    return " ".join(" ".join(p) if isinstance(p, list) else str(p) for p in parts if p)


@pytest.mark.parametrize("service", EMBEDDED, ids=lambda s: s.name)
def test_each_embedded_service_has_a_compose_twin_on_the_same_loopback_ports(service: Service):
    spec = COMPOSE["services"][service.name]
    assert spec.get("image"), f"{service.name} needs an image"
    published = {int(p.split(":")[1]): p for p in spec["ports"]}
    for port in service.ports:
        assert published.get(port) == f"127.0.0.1:{port}:{port}", f"{service.name} must publish {port} on loopback"
    for key, value in service.env.items():
        assert str(spec.get("environment", {}).get(key)) == value, f"{service.name} lacks {key}={value}"


def test_compose_creates_the_resources_the_embedded_stack_creates():
    init = compose_text_of("pubsub-init")
    for name in (names.TOPIC, names.DEAD_LETTER_TOPIC, names.SUBSCRIPTION, names.DEAD_LETTER_SUBSCRIPTION):
        assert f"/{name}" in init, f"pubsub-init does not create {name}"
    assert "deadLetterPolicy" not in init, "Dataflow supports no dead-letter policy on the subscription it reads"
    assert f'"ackDeadlineSeconds": {stack.ACK_DEADLINE_S}' in init
    assert COMPOSE["services"]["pubsub-init"]["depends_on"]["pubsub"]["condition"] == "service_healthy"


def test_every_service_uses_the_default_project():
    for service in ("pubsub", "pubsub-init", "bigquery"):
        assert names.DEFAULT_PROJECT in compose_text_of(service)


def test_the_documented_exports_are_the_embedded_exports():
    documented = dict(re.findall(r"(\w+_HOST|\w+_PROJECT(?:_ID)?|AWS_\w+)=(\S+)", COMPOSE_TEXT.split("services:")[0]))
    embedded: dict[str, str] = {}
    for service in EMBEDDED:
        embedded.update(service.exports)
    assert documented == embedded


def test_the_s3_service_runs_the_declared_moto_and_creates_the_history_bucket():
    command = compose_text_of("s3")
    local = PYPROJECT["project"]["optional-dependencies"]["local"]
    for requirement in (r for r in local if r.startswith(("moto", "flask"))):
        assert f"'{requirement}'" in command, f"the s3 service must install {requirement} as pyproject.toml declares"
    assert f"--port {names.S3_SERVER_PORT}" in command
    assert f"/{names.HISTORY_BUCKET}'" in command and "method='PUT'" in command
