"""The CI recipe (docs/ci/pipeline-check.yml) as a team copies it: its structure, and its `check` job run here step by
step, as GitHub's runner would run it, so the recipe cannot rot.

How the job is run locally:
- each `run:` step in order, as bash (`defaults.run.shell: bash` is `bash --noprofile --norc -eo pipefail`), in a
  temporary checkout of the "team's repository": tests/foreign_pipelines/flattened.py as pipeline.py and its contract
  rendered for the job's DATASET and OUTPUT_ROOT as pipeline.sinks.yaml;
- a step after a failed one runs only with `if: always()`, as on GitHub;
- `uses:` steps (actions: checkout, setup-python, upload-artifact, the JUnit report) cannot run here and are skipped
  by their kind; the install step is checked to be a pip install of this project, then skipped: this venv is the
  install;
- GitHub expressions (`${{ ... }}`) are replaced from EXPRESSIONS (an unknown one fails the test);
- two changes, both stated: `workbench up` gets free ports (a fixed port may be taken on a shared machine; later
  commands find the stack through WORKBENCH_HOME, so only `up` names ports), and CHECK_OPTIONS, the job's own knob,
  makes the battery small (SMALL_BATTERY).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import yaml
from stack_support import CLIENT_ENV, REPO, processes_under, stop_session

from workbench.localstack.ports import free_port, free_port_pair

# A whole battery through a pipeline: minutes, not pytest's default 300 s per test.
pytestmark = pytest.mark.timeout(900)

WORKFLOW = REPO / "docs" / "ci" / "pipeline-check.yml"
FOREIGN = REPO / "tests" / "foreign_pipelines"
JUNIT_XSD = REPO / "tests" / "battery" / "junit-10.xsd"
# Every scenario, each small: ~1,100 messages instead of ~85,000 (the whole battery's default).
# Budgets of minutes: this gate's verdict must not hang on how fast flattened.py (a row per line item on the
# DirectRunner) is on a loaded 2-core machine, where its GCS latency reached 87 s under the whole suite.
SMALL_BATTERY = "--rate 20 --duration 5s --burst-for 3s --repeats 1 --latency-budget 10m --drain-budget 10m"
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]  # GitHub's `shell: bash`
STEP_TIMEOUT_S = 900.0
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@v\d+$")  # owner/action@vN: a pinned major version


def load_workflow() -> dict:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean true; GitHub reads it as "on".
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def substitute(text: str, table: dict[str, str]) -> str:
    """`${{ expr }}` replaced from table; an expression the table does not know fails, naming it."""

    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        assert expression in table, f"the test cannot evaluate ${{{{ {expression} }}}}: add it to EXPRESSIONS"
        return table[expression]

    return EXPRESSION.sub(value, text)


def steps_running(job: dict, predicate) -> list[dict]:
    return [s for s in job["steps"] if "run" in s and predicate(s["run"])]


def the_step(job: dict, predicate, what: str) -> dict:
    found = steps_running(job, predicate)
    assert len(found) == 1, f"expected one step that {what}, found {len(found)}"
    return found[0]


def is_check(run: str) -> bool:
    return re.search(r"\bworkbench check\b", run) is not None


def is_install(run: str) -> bool:
    return re.search(r"\bpip install\b", run) is not None


def uses(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


# ------------------------------------------------------------------------------------------------ the structure


def test_the_workflow_has_a_local_gate_and_a_staging_job_each_step_where_ci_needs_it():
    workflow = load_workflow()
    assert set(workflow["on"]) == {"pull_request", "push", "workflow_dispatch"}
    assert workflow["defaults"]["run"]["shell"] == "bash"
    assert set(workflow["jobs"]) == {"check", "staging"}
    pinned = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]
    assert pinned and all(PINNED.match(u) for u in pinned), [u for u in pinned if not PINNED.match(u)]
    assert re.fullmatch(r"event-workbench\[local\] @ git\+https://\S+@\S+", workflow["env"]["WORKBENCH_PACKAGE"])

    check = workflow["jobs"]["check"]
    assert check["runs-on"] == "ubuntu-latest" and check["timeout-minutes"] > 0
    assert check["permissions"]["checks"] == "write"  # the JUnit report's check run
    assert [s.get("uses", "").split("@")[0] for s in check["steps"][:2]] == ["actions/checkout", "actions/setup-python"]
    assert str(uses(check, "actions/setup-python")[0]["with"]["python-version"]) == "3.11"
    install = the_step(check, is_install, "installs")
    assert '"$WORKBENCH_PACKAGE"' in install["run"]
    up = the_step(check, lambda r: re.search(r"\bworkbench up\b", r), "starts the stack")
    assert "--gcs" in up["run"] and "--dataset" in up["run"]
    gate = the_step(check, is_check, "runs the check")
    for option in ("--sinks", "--pipeline", "--junit check.xml", "--html check.html"):
        assert option in gate["run"], option
    assert "if" not in gate  # the gate's exit status is the job's verdict
    down = the_step(check, lambda r: re.search(r"\bworkbench down\b", r), "stops the stack")
    steps = check["steps"]
    assert steps.index(install) < steps.index(up) < steps.index(gate) < steps.index(down)
    assert down.get("if") == "always()"
    artifacts = uses(check, "actions/upload-artifact")
    assert len(artifacts) == 1 and artifacts[0].get("if") == "always()"
    assert {"check.html", "check.xml"} <= set(artifacts[0]["with"]["path"].split())
    report = uses(check, "mikepenz/action-junit-report")
    assert len(report) == 1 and report[0].get("if") == "always()" and report[0]["with"]["report_paths"] == "check.xml"

    staging = workflow["jobs"]["staging"]
    assert staging["needs"] == "check"
    assert "push" in staging["if"] and "workflow_dispatch" in staging["if"]
    assert staging["permissions"]["id-token"] == "write"  # Workload Identity Federation
    auth = uses(staging, "google-github-actions/auth")
    assert len(auth) == 1 and {"workload_identity_provider", "service_account"} <= set(auth[0]["with"])
    launch = the_step(staging, lambda r: "--runner DataflowRunner" in r, "launches on Dataflow")
    for option in ("--project", "--region", '--temp_location "gs://', "--streaming", "--job_name"):
        assert option in launch["run"], option
    judged = the_step(staging, is_check, "runs the check")
    assert "--pipeline" not in judged["run"]  # it judges the running job
    assert "--project" in judged["run"] and "--junit staging.xml" in judged["run"]
    drain = the_step(staging, lambda r: "gcloud dataflow jobs drain" in r, "drains the job")
    assert drain.get("if") == "always()" and "--region" in drain["run"]
    steps = staging["steps"]
    assert steps.index(auth[0]) < steps.index(launch) < steps.index(judged) < steps.index(drain)


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class StepRun:
    label: str
    outcome: str  # success | failure | skipped
    code: int | None = None
    output: str = field(default="", repr=False)


def _label(step: dict) -> str:
    return step.get("name") or step.get("uses") or step["run"].splitlines()[0]


def _checkout(folder: Path, dataset: str, root: str) -> Path:
    """The team's repository as actions/checkout leaves it: the pipeline, its contract, its requirements."""
    sys.path.insert(0, str(FOREIGN))
    try:
        from foreign_support import render_contract
    finally:
        sys.path.remove(str(FOREIGN))
    folder.mkdir()
    shutil.copy(FOREIGN / "flattened.py", folder / "pipeline.py")
    render_contract("flattened", folder / "pipeline.sinks.yaml", dataset, root, None)
    (folder / "requirements.txt").write_text("apache-beam[gcp]==2.77.0\n")
    return folder


@pytest.mark.slow
def test_the_check_job_runs_here_as_written_and_passes_a_correct_pipeline(tmp_path):
    workflow = load_workflow()
    job = workflow["jobs"]["check"]
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    expressions = {"runner.temp": str(runner_temp)}
    job_env = {k: substitute(str(v), expressions) for k, v in {**workflow["env"], **job["env"]}.items()}
    home = Path(job_env["WORKBENCH_HOME"])
    assert runner_temp in home.parents  # the job's state stays in the runner's scratch space (here: tmp)
    workspace = _checkout(tmp_path / "workspace", job_env["DATASET"], job_env["OUTPUT_ROOT"])
    expressions.update({"github.workspace": str(workspace), "env.WORKBENCH_HOME": str(home)})

    ports = {"pubsub": free_port_pair(), "bigquery": free_port_pair(), "gcs": free_port()}
    free_ports = " ".join(f"--{name}-port {port}" for name, port in ports.items())
    base = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    env = {**base, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}", "CI": "true",
           "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(runner_temp), "NO_GCE_CHECK": "true",
           "COLUMNS": "120", **job_env, "CHECK_OPTIONS": SMALL_BATTERY}  # fmt: skip

    runs: list[StepRun] = []
    failed = False
    try:
        for step in job["steps"]:
            label = _label(step)
            condition = step.get("if")
            assert condition in (None, "always()"), f"the test cannot evaluate if: {condition} ({label})"
            if failed and condition != "always()":
                runs.append(StepRun(label, "skipped"))
                continue
            if "uses" in step:  # an action: GitHub's to run, not ours
                runs.append(StepRun(label, "skipped"))
                continue
            script = substitute(step["run"], expressions)
            if is_install(script):
                assert '"$WORKBENCH_PACKAGE"' in script, script  # this project (the workflow's env, checked above)
                runs.append(StepRun(label, "skipped"))  # this venv has the workbench installed
                continue
            script = re.sub(r"\bworkbench up\b", f"workbench up {free_ports}", script)
            step_env = {**env, **{k: substitute(str(v), expressions) for k, v in step.get("env", {}).items()}}
            runs.append(_run_step(label, script, workspace, step_env))
            failed = failed or runs[-1].outcome == "failure"
        left = processes_under(home, workspace)
    finally:
        _clean_up(home, workspace, env)

    ran = [(r, s) for r, s in zip(runs, job["steps"], strict=True) if "run" in s]
    gate = next(r for r, s in ran if is_check(s["run"]))
    down = next(r for r, s in ran if re.search(r"\bworkbench down\b", s["run"]))
    summary = "\n".join(f"{r.outcome:8} {r.label} (exit {r.code})" for r in runs)
    (tmp_path / "check-output.txt").write_text(gate.output)  # whole, for whoever reads a failure
    shown = gate.output if len(gate.output) < 9000 else f"{gate.output[:3000]}\n[...]\n{gate.output[-6000:]}"
    assert gate.outcome == "success", f"{summary}\n{_failed_rows(workspace)}\n--- check output ---\n{shown}"
    assert all(r.outcome in ("success", "skipped") for r in runs), summary + "\n" + runs[-1].output[-3000:]
    assert down.outcome == "success", down.output[-3000:]
    assert not left, f"processes left after `workbench down`: {left}"

    suites = ET.parse(workspace / "check.xml").getroot()
    import xmlschema

    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(workspace / "check.xml"))
    assert int(suites.get("tests")) > 0 and int(suites.get("failures")) == 0 and int(suites.get("errors", 0)) == 0
    assert (workspace / "check.html").stat().st_size > 0
    assert list(home.glob("check/*/pipeline.log")), "the pipeline's log the artifact step uploads"


def _run_step(label: str, script: str, cwd: Path, env: dict[str, str]) -> StepRun:
    """One `run:` step as GitHub's runner runs it; bounded: past STEP_TIMEOUT_S its session is stopped."""
    child = subprocess.Popen([*BASH, script], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)  # fmt: skip
    try:
        output, _ = child.communicate(timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGTERM)
        try:
            output, _ = child.communicate(timeout=150)  # `workbench check` stops what it started
        except subprocess.TimeoutExpired:
            output = ""
        stop_session(child.pid)
        child.wait(10)
        return StepRun(label, "failure", None, f"timed out after {STEP_TIMEOUT_S:g} s\n{output}")
    return StepRun(label, "success" if child.returncode == 0 else "failure", child.returncode, output)


def _failed_rows(workspace: Path) -> str:
    """The scorecard's failing rows (check.json), for the failure message."""
    try:
        card = orjson.loads((workspace / "check.json").read_bytes())["scorecard"]
    except (OSError, KeyError, ValueError):
        return "(no check.json)"
    rows = [r for r in card["rows"] if r["status"] == "fail"]
    return "\n".join(f"FAILED {r['scenario']}/{r['property']}: {r['summary']} {r['samples'][:2]}" for r in rows)


def _clean_up(home: Path, workspace: Path, env: dict[str, str]) -> None:
    """Whatever the recipe left (a failed run): the stack by `workbench down`, then any process of this run."""
    if (home / "stack" / "state.json").exists():
        subprocess.run([sys.executable, "-m", "workbench.cli", "down"], env=env, capture_output=True, timeout=120)
    for pid, _ in processes_under(home, workspace):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
