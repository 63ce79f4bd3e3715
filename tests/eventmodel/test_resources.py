"""Resource defaults: the project a command runs against."""

from __future__ import annotations

import pytest

from eventmodel.resources import resolve_project


@pytest.mark.parametrize(
    ("explicit", "env", "expected"),
    [
        ("flag", {"PUBSUB_PROJECT_ID": "a", "GOOGLE_CLOUD_PROJECT": "b"}, "flag"),
        (None, {"PUBSUB_PROJECT_ID": "a", "GOOGLE_CLOUD_PROJECT": "b"}, "a"),
        (None, {"GOOGLE_CLOUD_PROJECT": "b"}, "b"),
        (None, {}, "local-default"),
    ],
)
def test_project_comes_from_flag_then_env_then_default(monkeypatch, explicit, env, expected):
    for name in ("PUBSUB_PROJECT_ID", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert resolve_project(explicit, "local-default") == expected
