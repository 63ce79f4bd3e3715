"""`workbench check` refuses what it cannot run, each case with exit 2, what went wrong and what to write instead,
before anything is published."""

from __future__ import annotations

import shlex
import sys

import pytest
from stack_support import Stack


@pytest.fixture
def no_stack(tmp_path) -> Stack:
    """A home where no stack runs, and no project named by the environment."""
    return Stack(tmp_path / "home", 0, 0, 0)


def _published_runs(stack: Stack) -> list:
    return list((stack.home / "runs").glob("*/manifest.json"))


def test_an_unknown_scenario_is_refused_with_the_names_to_write(no_stack):
    done = no_stack.workbench("check", "--scenario", "late", "--scenario", "out_of_order")
    assert done.returncode == 2, done.text
    assert "unknown scenario 'out_of_order'" in done.text
    assert "--scenario out-of-order" in done.text
    assert not _published_runs(no_stack)


def test_a_contract_that_does_not_validate_is_refused(no_stack, tmp_path):
    contract = tmp_path / "bad.sinks.yaml"
    contract.write_text("name: bad\nversion: 1\nbigquery:\n  dataset: x\n  tables:\n    order: {tabel: orders}\n")
    done = no_stack.workbench("check", "--sinks", str(contract))
    assert done.returncode == 2, done.text
    assert "bad.sinks.yaml" in done.text and "fix:" in done.text
    assert not _published_runs(no_stack)


def test_no_emulator_and_no_project_is_refused_with_both_ways_out(no_stack):
    done = no_stack.workbench("check", "--scenario", "steady")
    assert done.returncode == 2, done.text
    assert "no Pub/Sub emulator is running and no GCP project is named" in done.text
    assert "workbench up" in done.text and "--project" in done.text


def test_two_reports_in_one_file_are_refused(no_stack, tmp_path):
    done = no_stack.workbench("check", "--json", str(tmp_path / "r"), "--junit", str(tmp_path / "r"))
    assert done.returncode == 2, done.text
    assert "name the same file" in done.text


def test_a_pipeline_command_that_exits_at_once_is_refused_with_its_output(check_stack):
    command = shlex.join([sys.executable, "-c", "import sys; print('no --streaming given'); sys.exit(3)"])
    done = check_stack.workbench("check", "--scenario", "steady", "--pipeline", command, timeout=120)
    assert done.returncode == 2, done.text
    assert "the pipeline command exited at once (status 3)" in done.text
    assert "no --streaming given" in done.text  # its own output, so the user sees why
    assert "workbench exec --" in done.text  # the fix: run it alone
    assert not _published_runs(check_stack)
