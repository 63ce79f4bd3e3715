"""The embedded local stack: `workbench up`, `down`, `status` and `env` as library calls.

State lives in $WORKBENCH_HOME/stack/state.json (what runs, by pid and command line) with one log per
service beside it. `up` is idempotent: a healthy service is left alone, a dead one is restarted, and the
Pub/Sub resources (and with the S3 server, the history bucket) are created only when missing. `down` stops
exactly what `up` started.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from endpoints import Endpoints, http_endpoint
from eventmodel import resources as names
from eventmodel.exposure import warn_if_exposed
from eventmodel.resources import workbench_home
from workbench import extras
from workbench.errors import WorkbenchError
from workbench.localstack import processes
from workbench.localstack.duckdb_extensions import install_spatial
from workbench.localstack.ports import listener_pid, port_in_use
from workbench.localstack.services import Service, bigquery, gcs, pubsub, s3

START_TIMEOUT_S = 60.0
# The pipeline extends the lease of what it still works on (workbench/pipeline_run/ack_ledger.py), so the
# deadline need not cover a slow bundle: it is how soon a killed run's messages, or a lost ack's, come back.
ACK_DEADLINE_S = 20


@dataclass(frozen=True)
class StackConfig:
    host: str = names.LOCAL_HOST
    project: str = names.DEFAULT_PROJECT
    pubsub_port: int = names.PUBSUB_EMULATOR_PORT
    bigquery_port: int = names.BIGQUERY_EMULATOR_PORT
    gcs_port: int = names.GCS_EMULATOR_PORT
    s3_port: int = names.S3_SERVER_PORT
    with_gcs: bool = False
    # The S3 server (moto) for history: `workbench publish --history --to s3://...` and `workbench backfill`.
    with_s3: bool = False
    with_bigquery: bool = True
    # bqemulator's time travel copies a table on every write: off by default for the long runs a stack serves.
    bigquery_time_travel: bool = False
    data_dir: Path | None = None  # durable Pub/Sub state
    # The BigQuery emulator keeps its tables in a DuckDB file under $WORKBENCH_HOME/stack/data/bigquery, so that a
    # restart, a crash or `down` + `up` loses no row (`down --reset` is the way to start empty); False: in memory.
    bigquery_persistent: bool = True
    # The Pub/Sub emulator's admin service (fault injection at run time) is off unless asked for: the chaos demo
    # and fault-injection tests turn it on; `workbench up --pubsub-admin` from the command line.
    pubsub_admin: bool = False
    # Empty BigQuery datasets to create beside the workbench's own: a user's pipeline writes its tables with Beam's
    # CREATE_IF_NEEDED, which creates tables, never the dataset they go in (`workbench up --dataset NAME`).
    datasets: tuple[str, ...] = ()

    def services(self) -> list[Service]:
        # Absolute: the emulator runs in a working folder of its own, where a relative path means somewhere else.
        durable = self.data_dir.expanduser().absolute() if self.data_dir else None
        chosen = [pubsub(self.host, self.project, self.pubsub_port, durable, self.pubsub_admin)]
        if self.with_bigquery:
            keep = bigquery_data_dir() if self.bigquery_persistent else None
            chosen.append(bigquery(self.host, self.project, self.bigquery_port, self.bigquery_time_travel, keep))
        if self.with_gcs:
            chosen.append(gcs(self.host, self.gcs_port))
        if self.with_s3:
            chosen.append(s3(self.host, self.s3_port))
        return chosen


def stack_dir() -> Path:
    return workbench_home() / "stack"


def data_dir() -> Path:
    """What the stack keeps across restarts (removed only by `down --reset`)."""
    return stack_dir() / "data"


def bigquery_data_dir() -> Path:
    path = data_dir() / "bigquery"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _state_path() -> Path:
    return stack_dir() / "state.json"


def read_state() -> dict[str, Any]:
    try:
        return orjson.loads(_state_path().read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {"services": {}}


def _write_state(state: dict[str, Any]) -> None:
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
    os.replace(temporary, path)


def _workdir(service: str) -> Path:
    """Where a service runs: its scratch files (DuckDB spills into ./.tmp) stay out of the user's folder."""
    return stack_dir() / "work" / service


def _running(entry: dict[str, Any]) -> bool:
    return processes.is_ours(entry["pid"], entry["argv"])


def up(
    config: StackConfig,
    on_step: Callable[[str], None] = lambda _: None,
    port_option: str = "workbench up --{}-port N",
    restart: bool = False,
) -> dict[str, Any]:
    """Start what is not running, wait until every service answers, create the resources. Idempotent.

    A service running with other settings is restarted with these, except a Pub/Sub emulator whose restart would
    lose messages (restart_would_discard): that needs restart=True, the user's consent.

    port_option: how the caller's user picks another port for a service ({} is its name), for the error that
    says a port is taken.

    A service whose optional install is missing stops the start before anything runs (WorkbenchError naming
    `pip install 'event-workbench[local]'`); a host other than loopback is allowed, with a warning.
    """
    check_datasets(config)
    for service in config.services():
        if service.extra:
            extras.require(service.extra, f"the local stack's {service.name} emulator", *service.modules)
    if config.with_bigquery:
        install_spatial()  # the emulator's offline fix, also for an installed wheel (no bootstrap)
    warn_if_exposed(config.host, "the local stack", "read and write its topics, tables and buckets")
    state = read_state()
    state["project"] = config.project
    for service in config.services():
        entry = state["services"].get(service.name)
        if entry and _running(entry) and entry["argv"] == service.argv and service.probe(config.host, service.port):
            on_step(f"{service.name} already running (pid {entry['pid']})")
            continue
        if entry and _running(entry):  # running with other settings: restart it with these
            why = service.name == "pubsub" and not restart and restart_would_discard(entry)
            if why:
                raise WorkbenchError(
                    f"the running Pub/Sub emulator would be restarted for the new settings, and {why}",
                    "reconcile the runs it serves first, then `workbench up --restart` with these settings; or "
                    "keep its settings (`workbench status` shows its command line)",
                )
            processes.stop(entry["pid"], entry["argv"])
        busy = [p for p in service.ports if port_in_use(config.host, p)]
        if busy:
            raise port_taken(config.host, busy[0], service.name, port_option)
        log = stack_dir() / "logs" / f"{service.name}.log"
        on_step(f"starting {service.name} on {config.host}:{service.port}")
        pid = processes.start_detached(service.argv, log, service.env, cwd=_workdir(service.name))
        state["services"][service.name] = {
            "pid": pid,
            "argv": service.argv,
            "host": config.host,
            "port": service.port,
            "exports": service.exports,
            "log": str(log),
            "started_at": datetime.now(UTC).isoformat(),
        }
        _write_state(state)
        _wait_ready(service, config.host, pid, log)
        on_step(f"{service.name} ready (pid {pid})")
    # Forget services that this configuration no longer includes but that are not running either.
    wanted = {s.name for s in config.services()}
    for name in [n for n, e in state["services"].items() if n not in wanted and not _running(e)]:
        del state["services"][name]
    _write_state(state)
    create_pubsub_resources(f"{config.host}:{config.pubsub_port}", config.project)
    on_step(f"topics {names.TOPIC}, {names.DEAD_LETTER_TOPIC} and their subscriptions ready")
    if config.with_bigquery:
        from ddl.apply import apply_ddl

        applied = apply_ddl(project=config.project, emulator=f"{config.host}:{config.bigquery_port}")
        on_step(
            f"BigQuery dataset {names.DATASET}: {len(applied.applied)} DDL statements applied"
            + (f", {len(applied.skipped)} the emulator cannot run skipped" if applied.skipped else "")
        )
        if config.datasets:
            create_datasets(f"{config.host}:{config.bigquery_port}", config.project, config.datasets)
            on_step(f"BigQuery dataset(s) {', '.join(config.datasets)} ready (empty unless they were there before)")
    if config.with_s3:
        from endpoints.s3 import create_buckets, s3_client

        create_buckets(s3_client(f"{config.host}:{config.s3_port}"), [names.HISTORY_BUCKET])
        on_step(f"S3 bucket {names.HISTORY_BUCKET} ready (in memory: `down` empties it)")
    return state


# BigQuery's dataset names: letters, digits and underscores, at most 1,024 characters
# (https://cloud.google.com/bigquery/docs/datasets#dataset-naming).
DATASET_NAME = re.compile(r"[A-Za-z0-9_]{1,1024}")


def check_datasets(config: StackConfig) -> None:
    """Refuse, before anything starts, a --dataset BigQuery would refuse, or one with no BigQuery emulator."""
    if config.datasets and not config.with_bigquery:
        raise WorkbenchError(
            f"--dataset {config.datasets[0]} needs the BigQuery emulator, and --no-bigquery leaves it out",
            "drop --no-bigquery, or drop --dataset",
        )
    for name in config.datasets:
        if not DATASET_NAME.fullmatch(name):
            raise WorkbenchError(
                f"--dataset {name!r} is not a BigQuery dataset name (letters, digits and underscores only)",
                f"write e.g. --dataset {re.sub(r'[^A-Za-z0-9_]', '_', name)[:1024] or 'shop'}",
            )


def create_datasets(emulator: str, project: str, datasets: tuple[str, ...] | list[str]) -> None:
    """Each dataset, empty, in the emulator's project; one that exists is left as it is (idempotent)."""
    from endpoints.bigquery import bigquery_client

    client = bigquery_client(project, emulator, "US")
    try:
        for name in datasets:
            client.create_dataset(f"{project}.{name}", exists_ok=True, timeout=30)
    finally:
        client.close()


def restart_would_discard(entry: dict[str, Any]) -> str | None:
    """Why restarting the running Pub/Sub emulator would lose messages, or None when it provably would not: it
    is durable (--data-dir: a restart replays its journal), or nothing was ever published to it since it started
    (its Stats service, always on, counts every publish; an acked message a subscription retains for seeking, such
    as the dead letters reconcile reads, is in that count but in no backlog)."""
    from emulator.pubsub.admin import AdminClient  # the emulator's client: only when a restart is in question

    if "--data-dir" in entry.get("argv", []):
        return None
    address = f"{entry.get('host', names.LOCAL_HOST)}:{entry['port']}"
    try:
        with AdminClient(address, timeout=5) as admin:
            stats = admin.stats()
    except Exception as exc:  # an emulator that cannot say what it holds may hold anything
        return f"its message counts cannot be read ({type(exc).__name__}), so it may hold messages"
    published = sum(t.get("published", 0) for t in stats.get("topics", {}).values())
    if not published:
        return None
    unread = sum(s.get("backlog", 0) for s in stats.get("subscriptions", {}).values())
    return (
        f"it is not durable and {published:,} messages were published to it since it started ({unread:,} still "
        "unread; the dead-letter copies reconcile reads are among what would go)"
    )


def port_taken(host: str, port: int, service: str, port_option: str) -> WorkbenchError:
    """The error for a port someone holds, naming who: the stack of another workbench home (its services run in
    HOME/stack/work/SERVICE), or another process."""
    other = f"choose another port: {port_option.format(service)}"
    pid = listener_pid(port)
    try:
        workdir = Path(os.readlink(f"/proc/{pid}/cwd")) if pid else None
    except OSError:
        workdir = None
    if workdir is not None and workdir.parent.name == "work" and workdir.parent.parent.name == "stack":
        home = workdir.parents[2]
        if home == workbench_home():
            return WorkbenchError(
                f"port {port} on {host} is held by this home's {workdir.name} (pid {pid}), which its state does "
                "not list",
                f"stop it (`kill {pid}`), or {other}",
            )
        return WorkbenchError(
            f"port {port} on {host} is held by the workbench stack of another home, {home} (its {workdir.name}, "
            f"pid {pid}), so {service} cannot start for {workbench_home()}",
            f"stop that stack (`WORKBENCH_HOME={home} workbench down`), use it (`export WORKBENCH_HOME={home}`), "
            f"or {other}",
        )
    command = " ".join(processes.command_line(pid) or ["?"])[:80] if pid else ""
    holder = f"another process (pid {pid}: {command})" if pid else "another process"
    return WorkbenchError(
        f"port {port} on {host} is in use by {holder}, so {service} cannot start", f"stop that process, or {other}"
    )


def _wait_ready(service: Service, host: str, pid: int, log: Path) -> None:
    outcome = processes.wait_ready(lambda: service.probe(host, service.port), lambda: processes.alive(pid),
                                   START_TIMEOUT_S)  # fmt: skip
    if outcome == "exited":
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise WorkbenchError(
            f"{service.name} exited during start. Last lines of {log}:\n{tail}",
            "fix the cause above, then run `workbench up` again",
        )
    if outcome == "timeout":
        raise WorkbenchError(
            f"{service.name} did not become ready within {START_TIMEOUT_S:g}s (log: {log})",
            "read the log, then `workbench down` and `workbench up` again",
        )


def create_pubsub_resources(emulator_host: str, project: str, ack_deadline_seconds: int = ACK_DEADLINE_S) -> None:
    """The topic, the pipeline's subscription, the dead-letter topic with its subscription, and reconcile's own
    subscription on the dead-letter topic.

    The pipeline's subscription has no Pub/Sub dead-letter policy, as in production: Pub/Sub's dead-letter topics
    are not supported with Dataflow ("Handle message failures"), and the pipeline's own dead letter is the
    mechanism. A policy here would move a message the pipeline is still retrying (a sink down) out of its reach.
    """
    from google.api_core import exceptions

    from endpoints.pubsub import publisher_client, subscriber_client

    # Clients on an explicit loopback channel: the caller's PUBSUB_EMULATOR_HOST is neither needed nor changed.
    publisher = publisher_client(emulator_host)
    subscriber = subscriber_client(emulator_host)
    topic = publisher.topic_path(project, names.TOPIC)
    dead_letter_topic = publisher.topic_path(project, names.DEAD_LETTER_TOPIC)
    try:
        for path in (topic, dead_letter_topic):
            with contextlib.suppress(exceptions.AlreadyExists):
                publisher.create_topic(request={"name": path}, timeout=10)
        for name, source in ((names.SUBSCRIPTION, topic), (names.DEAD_LETTER_SUBSCRIPTION, dead_letter_topic)):
            request = {
                "name": subscriber.subscription_path(project, name),
                "topic": source,
                "ack_deadline_seconds": ack_deadline_seconds,
                # Never expires (as in the runbook, docs/pipeline.md): by default Pub/Sub deletes one idle 31 days.
                "expiration_policy": {},
            }
            with contextlib.suppress(exceptions.AlreadyExists):
                subscriber.create_subscription(request=request, timeout=10)
        # Reconcile's own view of the dead letters, from the start: a subscription sees only what follows it. One
        # kept from an older version (a durable emulator) gets the expiration policy it lacks.
        from reconcile.sources import ensure_reconcile_subscription

        ensure_reconcile_subscription(subscriber, project)
    finally:
        publisher.transport.close()
        subscriber.close()


def down(on_step: Callable[[str], None] = lambda _: None, reset: bool = False) -> list[str]:
    """Stop every service `up` started (by pid and command line, nothing else); returns their names.

    reset also deletes what the stack keeps across restarts (the BigQuery emulator's tables): the next `up`
    starts empty.
    """
    state = read_state()
    stopped = []
    for name, entry in list(state["services"].items()):
        if processes.stop(entry["pid"], entry["argv"]):
            stopped.append(name)
            on_step(f"stopped {name} (pid {entry['pid']})")
        else:
            on_step(f"{name} was not running")
        del state["services"][name]
        shutil.rmtree(_workdir(name), ignore_errors=True)
    _write_state(state)
    if reset and data_dir().exists():
        shutil.rmtree(data_dir())
        on_step(f"removed the stack's data ({data_dir()}): the next `workbench up` starts empty")
    return stopped


def status() -> list[dict[str, Any]]:
    """One row per known service: running or not, where, since when, and whether it answers."""
    state = read_state()
    rows = []
    for name, entry in state["services"].items():
        running = _running(entry)
        rows.append(
            {
                "service": name,
                "state": "running" if running else "stopped",
                "pid": entry["pid"] if running else None,
                "endpoint": f"{entry['host']}:{entry['port']}",
                "started_at": entry["started_at"],
                "log": entry["log"],
            }
        )
    return rows


PUBSUB_ENV = names.PUBSUB_EMULATOR_ENV
BIGQUERY_ENV = names.BIGQUERY_EMULATOR_ENV
STORAGE_ENV = names.STORAGE_EMULATOR_ENV
S3_ENV = names.AWS_ENDPOINT_ENV


def local_endpoints(pubsub: str | None = None, bigquery: str | None = None) -> Endpoints:
    """Where the local emulators are: the argument, else the environment, else what `workbench up` started.

    Pub/Sub as HOST:PORT, BigQuery, storage and S3 as http://HOST:PORT, and the project `workbench up` created its
    topics in; None for what is not known (then the caller talks to real Google Cloud or AWS, or says what to
    start). Resolved once, here, by the CLI; the libraries are handed the value.
    """
    try:
        exports = env_exports()
    except Exception:  # no readable state yet: nothing was started
        exports = {}
    pubsub = pubsub or os.environ.get(PUBSUB_ENV) or exports.get(PUBSUB_ENV)
    bigquery = bigquery or os.environ.get(BIGQUERY_ENV) or exports.get(BIGQUERY_ENV)
    return Endpoints(
        project=exports.get(names.PROJECT_ENV_VARS[0]),
        pubsub=pubsub,
        bigquery=http_endpoint(bigquery) if bigquery else None,
        storage=os.environ.get(STORAGE_ENV) or exports.get(STORAGE_ENV),
        s3=os.environ.get(S3_ENV) or exports.get(S3_ENV),
        s3_region=os.environ.get(names.AWS_REGION_ENV) or exports.get(names.AWS_REGION_ENV),
    )


def env_exports() -> dict[str, str]:
    """The variables that point client libraries at the running services (like `gcloud ... env-init`)."""
    state = read_state()
    exports: dict[str, str] = {}
    for entry in state["services"].values():
        if _running(entry):
            exports.update(entry["exports"])
    return exports
