"""The bottom layer's value and its place: Endpoints, http_endpoint, one FixableError, and a package that loads
no other package of the project (it ships to Dataflow's workers and sits below everything)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import endpoints
from endpoints import Endpoints, http_endpoint
from endpoints.errors import EndpointError, FixableError

ROOT = Path(__file__).resolve().parents[2]


def test_endpoints_default_to_the_cloud_services_and_cannot_change():
    cloud = Endpoints()
    assert dataclasses.astuple(cloud) == (None,) * 6  # every service the cloud's own, no project of the stack
    local = Endpoints(project="p", pubsub="127.0.0.1:8085", bigquery="http://127.0.0.1:9050", s3_region="eu-west-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        local.pubsub = None  # type: ignore[misc]
    assert dataclasses.replace(local, pubsub=None).pubsub is None and local.pubsub == "127.0.0.1:8085"


@pytest.mark.parametrize(
    ("given", "url"),
    [("127.0.0.1:9050", "http://127.0.0.1:9050"), ("http://h:1", "http://h:1"), ("https://h", "https://h")],
)
def test_http_endpoint_adds_a_scheme_only_when_there_is_none(given, url):
    assert http_endpoint(given) == url


def test_one_fixable_error_one_http_endpoint_one_set_of_local_keys():
    """Each is defined once, here, and imported from here only: eventmodel names none of them."""
    from eventmodel import resources

    assert not {"http_endpoint", "LOCAL_S3_ACCESS_KEY_ID", "LOCAL_S3_REGION"} & set(vars(resources))
    assert not (ROOT / "eventmodel" / "errors.py").exists()
    error = EndpointError("cannot reach it", "start it")
    assert isinstance(error, FixableError) and str(error) == "cannot reach it\n  fix: start it"


def test_the_package_loads_no_other_package_of_the_project():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    ours = sorted(p.removesuffix("*") for p in include)
    assert "endpoints" in ours
    code = (
        "import importlib, pkgutil, sys, endpoints;"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(endpoints.__path__, 'endpoints.')];"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({ours!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "endpoints"


def test_the_docstring_names_every_module_of_the_package():
    modules = sorted(p.stem for p in Path(endpoints.__file__).parent.glob("*.py") if p.stem != "__init__")
    assert [m for m in modules if f"endpoints/{m}.py" not in endpoints.__doc__] == []
