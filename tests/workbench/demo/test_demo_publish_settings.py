"""The demo publishes through the library (workbench.publish_run), never through the publish command: its own
settings, with the further options the user gave (parsed by the publish command's parser) over them."""

from __future__ import annotations

import click
import pytest

from workbench.cli.publish import publish_options
from workbench.demo import DemoOptions, publish_settings


def test_further_options_are_read_as_the_publish_command_reads_them():
    assert publish_options(["--late-rate", "0.05", "--max-lateness", "2m", "--seed", "9"]) == {
        "late_rate": 0.05,
        "max_lateness": 120.0,
        "seed": 9,
    }
    assert publish_options([]) == {}


def test_an_option_publish_does_not_know_is_refused_as_publish_refuses_it():
    with pytest.raises(click.NoSuchOption, match="--no-such-flag"):
        publish_options(["--no-such-flag"])
    with pytest.raises(click.BadParameter, match=r"START\.\.END"):
        publish_options(["--history", "yesterday"])


def test_the_demo_settings_with_the_users_options_over_them():
    settings = publish_settings(DemoOptions(seed=3, publish_options={"seed": 9, "late_rate": 0.05}), "run-1", "p")
    assert (settings.rate, settings.malformed_rate, settings.duplicate_rate) == (500.0, 0.05, 0.01)
    assert (settings.seed, settings.late_rate, settings.count, settings.duration) == (9, 0.05, 5000, None)
    assert (settings.run_id, settings.project, settings.to) == ("run-1", "p", None)
    # Every value the demo sets counts as given, as on the command line it used to build: a --replay refuses them.
    assert {"rate", "seed", "late_rate", "run_id", "project", "count"} <= settings.given
    assert "workers" not in settings.given


def test_a_demo_for_a_duration_publishes_no_count():
    settings = publish_settings(DemoOptions(duration=30.0), "run-2", "p")
    assert (settings.duration, settings.count) == (30.0, None)
    assert "count" not in settings.given
