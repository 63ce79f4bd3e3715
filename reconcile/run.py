"""Reconcile one run: load its manifest and every sink into the engine, run the comparison, build the report.

    >>> target = ReconcileTarget(endpoints=Endpoints(bigquery="127.0.0.1:9050", pubsub="127.0.0.1:8085"))
    >>> report = reconcile("latest", target)                       # doctest: +SKIP
    >>> report = reconcile_waiting("latest", target, wait_s=60)    # doctest: +SKIP

Only the run's own rows are compared: those with its run_id, plus rows of no known run published during the
run (a foreign producer on the same topic), which are reported apart by message id.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from endpoints import Endpoints
from endpoints.bigquery import bigquery_client
from endpoints.storage import storage_client
from eventmodel import resources as names
from eventmodel import rows
from eventmodel.schema import EVENT_TYPES
from publisher.manifest import MIN_RECONCILE_VERSION, list_runs, load_manifest, run_dir, runs_root, stop_note
from publisher.replay import replays, runs_sharing_ids
from reconcile import queries as Q
from reconcile import sources
from reconcile.altered import altered_fields
from reconcile.bounds import ReadBounds, files_written_since, folder_prefixes, manifest_event_times, read_bounds
from reconcile.contract import Contract
from reconcile.engine import DEAD_LETTER_COLUMNS, SINK_EVENT_COLUMNS, DuckDBEngine, Engine
from reconcile.errors import NotYetReadable, ReconcileError, StillPublishing
from reconcile.locations import check_locations
from reconcile.report import Report

# Rows published this long around the run's start and end still count as published during it (clock skew
# between the publisher and Pub/Sub's publish_time).
WINDOW_SLACK = timedelta(seconds=5)
# --wait: poll this often, and stop early once nothing changed for this long (longer than the pipeline's file
# flush interval, so a buffer about to be written is waited for). A poll that reads real BigQuery is a set of
# billed queries (each at least 10 MB: cloud.google.com/bigquery/pricing, on-demand compute), so it comes a
# minute apart; DuckDB over the local stack polls at once.
POLL_INTERVAL_S = 2.0
BIGQUERY_POLL_INTERVAL_S = 60.0
STABLE_FOR_S = 15.0
# Runs a pipeline reads: Pub/Sub runs (the stream) and S3 history runs (`workbench backfill`).
RECONCILABLE_KINDS = ("pubsub", "s3")

Step = Callable[[str], None]


@dataclass(frozen=True)
class ReconcileTarget:
    """Which sinks to read and where."""

    output_root: str | None = "./output"
    project: str = names.DEFAULT_PROJECT
    dataset: str | None = names.DATASET
    # Where BigQuery, Pub/Sub and Cloud Storage are: an emulator's address each, None for Google Cloud itself (ADC).
    # The workbench resolves it (workbench.localstack.stack.local_endpoints) and hands it here.
    endpoints: Endpoints = field(default_factory=Endpoints)
    read_dead_letter_topic: bool = True
    allow_foreign: bool = False
    # Where the comparison runs: "duckdb" (in this process), "bigquery" (inside BigQuery, scratch tables in
    # scratch_dataset), or "auto": BigQuery when reconciling real BigQuery, DuckDB on the local stack.
    engine: str = "auto"
    scratch_dataset: str = f"{names.DATASET}_reconcile"
    # A sink contract file (reconcile.contract): where the pipeline puts each event. None: this project's pipeline,
    # the built-in contract, over output_root, dataset and the dead-letter topic.
    sinks: str | None = None

    def engine_name(self) -> str:
        if self.engine != "auto":
            return self.engine
        return "bigquery" if self.dataset and not self.endpoints.bigquery else "duckdb"

    def external(self) -> bool:
        """The BigQuery engine reads a gs:// tree through external tables (real BigQuery only)."""
        return bool(self.output_root and self.output_root.startswith("gs://") and not self.endpoints.bigquery)

    def reads_real_bigquery(self) -> bool:
        return bool((self.dataset or self.engine_name() == "bigquery") and not self.endpoints.bigquery)

    def poll_interval(self) -> float:
        """--wait's poll: a minute apart when each poll queries real BigQuery (either engine sends the event-table
        SELECTs there), at once on the local stack."""
        return BIGQUERY_POLL_INTERVAL_S if self.reads_real_bigquery() else POLL_INTERVAL_S

    def storage_client(self) -> Any:
        """google-cloud-storage's client for a gs:// tree: the emulator's, or GCS's (ADC)."""
        return storage_client(self.project, self.endpoints.storage)

    def make_engine(self, session: BigQuerySession | None = None) -> Engine:
        if self.engine_name() == "duckdb":
            return DuckDBEngine()
        from reconcile.engine import BigQueryEngine

        session = session or bigquery_session(self)
        # Before any query: a job runs in one location, so the scratch tables must be where the events are, and
        # an external table's bucket must be colocated with its dataset (check_locations).
        check_locations(self, session)
        return BigQueryEngine(
            session.client, self.project, self.scratch_dataset, external=self.external(), location=session.location
        )

    def contract(self) -> Contract:
        """The sink contract this reconcile judges by, its places resolved: the GCS root is output_root and the
        dataset is `dataset` (None leaves a sink out); the topic is read unless read_dead_letter_topic is off."""
        from reconcile.contract import default_contract, load_contract

        if not self.sinks:
            topic = names.DEAD_LETTER_TOPIC if self.read_dead_letter_topic else None
            return default_contract(self.output_root, self.dataset, topic)
        contract = load_contract(self.sinks)
        gcs = replace(contract.gcs, root=self.output_root) if contract.gcs and self.output_root else None
        letters = contract.dead_letters
        if not self.read_dead_letter_topic:
            letters = replace(letters, topic=None)
        if not self.dataset:
            letters = replace(letters, table=None)
        if letters.topic and letters.topic != names.DEAD_LETTER_TOPIC:
            raise ReconcileError(
                f"{self.sinks}: dead_letters/topic {letters.topic}: reconcile reads dead letters through its own "
                f"subscription on {names.DEAD_LETTER_TOPIC} only",
                f"name {names.DEAD_LETTER_TOPIC} (the topic the pipeline's dead letters go to), or pass "
                "--no-dead-letter-topic and check a dead-letter table or prefix instead",
            )
        return replace(contract, gcs=gcs, dataset=self.dataset, tables=contract.tables if self.dataset else (),
                       dead_letters=letters)  # fmt: skip

    def checked(self) -> dict[str, bool]:
        contract = self.contract()
        letters = contract.dead_letters
        return {
            Q.GCS: bool(contract.gcs),
            Q.BIGQUERY: bool(contract.dataset and contract.tables),
            Q.DEAD_LETTER_TABLE: bool(contract.dataset and letters.table),
            Q.DEAD_LETTER_TOPIC: bool(letters.topic),
            **({Q.DEAD_LETTER_FILES: True} if letters.gcs else {}),
        }


@dataclass(frozen=True)
class BigQuerySession:
    """The BigQuery client of one reconcile and the location every job of it names (the events dataset's)."""

    client: Any
    location: str | None


def bigquery_session(target: ReconcileTarget) -> BigQuerySession:
    """A client for `target`, and the location of its events dataset (else of the scratch dataset, when BigQuery
    is read for the comparison only): every job names it, as a job in a regional dataset must."""
    from google.api_core.exceptions import NotFound

    client = _bigquery_client(target)
    location = None
    if target.dataset:
        try:
            location = client.get_dataset(f"{target.project}.{target.dataset}").location
        except NotFound:
            raise NotYetReadable(
                f"BigQuery dataset {target.project}.{target.dataset} not found",
                "apply the model (`workbench bq apply`), or name the pipeline's dataset with --dataset",
            ) from None
    elif target.engine_name() == "bigquery":
        with contextlib.suppress(NotFound):
            location = client.get_dataset(f"{target.project}.{target.scratch_dataset}").location
    if location:
        client = _bigquery_client(target, location)
    return BigQuerySession(client, location)


def resolve_run(run_id: str) -> dict[str, Any]:
    """The manifest of run_id ("latest": the newest run), checked to be reconcilable.

    A completed run is; an interrupted one is too when every message it sent has a recorded outcome (a drained
    stop: Ctrl-C, SIGTERM or SIGHUP once); refused are a run still publishing (StillPublishing: a caller may
    wait for it), a dead one (its manifest says running, its process is gone), a failed one, and an interrupted one
    with messages in flight at the stop (published or not, nobody knows)."""
    from publisher.manifest import COMPLETED, DEAD, INTERRUPTED, RUNNING, run_state

    if run_id == "latest":
        found = [m for m in list_runs() if m.get("target", {}).get("kind") in RECONCILABLE_KINDS]
        if not found:
            raise ReconcileError(
                f"no publish run to Pub/Sub under {runs_root()}",
                "publish one first (`workbench publish --count 1000`), or set WORKBENCH_HOME to where runs are",
            )
        manifest = found[0]
    else:
        manifest = load_manifest(run_id)
        if manifest is None:
            raise ReconcileError(f"no run {run_id!r} under {runs_root()}", "list the runs with `workbench runs`")
    rid = manifest.get("run_id", run_id)
    state = run_state(manifest)
    kind = manifest.get("target", {}).get("kind")
    if kind not in RECONCILABLE_KINDS:
        raise ReconcileError(
            f"run {rid} was written to a file, not published to Pub/Sub or S3: no pipeline reads it",
            "reconcile a run published to Pub/Sub or written to S3 (`workbench runs` shows where each went)",
        )
    if (manifest.get("manifest_version") or 1) < MIN_RECONCILE_VERSION:
        raise ReconcileError(
            f"run {rid} was recorded by an older workbench (manifest version {manifest.get('manifest_version', 1)}"
            f", reconcile needs {MIN_RECONCILE_VERSION}: MD5 and canonical digests, and each event's object and line)",
            "publish the run again with this version",
        )
    if state == DEAD:
        process = manifest.get("publisher") or {}
        raise ReconcileError(
            f"run {rid} is dead: its manifest says running, but its publisher (pid {process.get('pid')} on "
            f"{process.get('host')}) is gone (killed with SIGKILL, or crashed), so what it had in flight and its "
            "last second of outcomes are unknown; waiting would not change that",
            "publish the run again; a publish stopped once (Ctrl-C, SIGTERM) ends interrupted and reconcilable",
        )
    if state == RUNNING:
        raise StillPublishing(
            f"run {rid} is still publishing (its manifest says running)",
            "wait for the publish to end, or pass --wait SECONDS to wait for it",
            run_id=rid,
        )
    if state == INTERRUPTED:
        totals = manifest.get("totals") or {}
        sent, published, failed = (int(totals.get(k) or 0) for k in ("sent", "published", "failed"))
        unknown = max(int(totals.get("in_flight") or 0), sent - published - failed)
        stop = manifest.get("stop") or {}
        if unknown > 0 or stop.get("complete") is False:
            how = f"{unknown:,} of its {sent:,} messages were" if unknown > 0 else "messages may have been"
            raise ReconcileError(
                f"run {rid} was interrupted with messages in flight: {how} handed to "
                f"{'Pub/Sub' if kind == 'pubsub' else 'the object store'} with no recorded "
                "outcome (a forced stop does not wait for them), so whether each was published is unknowable "
                f"({published:,} published and {failed:,} failed are recorded)",
                "publish the run again and stop it only once (Ctrl-C, SIGTERM or SIGHUP): the publisher then "
                "drains what is in flight and the run can be reconciled",
            )
    elif state not in (COMPLETED, RUNNING):
        raise ReconcileError(
            f"run {rid} ended {state}: its manifest does not say what every message became",
            "publish the run again (`workbench runs` shows how each run ended)",
        )
    return manifest


def _window(manifest: dict[str, Any]) -> tuple[datetime, datetime]:
    """When a run published, WINDOW_SLACK added on each side."""
    start = _parse(manifest["started_at"]) - WINDOW_SLACK
    end = _parse(manifest.get("finished_at") or manifest["started_at"]) + WINDOW_SLACK
    return start, end


@dataclass(frozen=True)
class Plan:
    """What one reconcile reads: the runs it knows, those sharing the run's ids, its window, the rows in scope
    and how far each source is read."""

    known: list[str]
    sharing: list[str]
    window: tuple[datetime, datetime]
    scope: str
    bounds: ReadBounds


def _plan(manifest: dict[str, Any], csvs: list[Path]) -> Plan:
    run_id = manifest["run_id"]
    manifests = list_runs()
    known = sorted({m["run_id"] for m in manifests if m.get("run_id")} | {run_id})
    sharing = list(runs_sharing_ids(manifest, manifests))
    window = _window(manifest)
    # The runs sharing the run's ids are read too (their copies are held_by_earlier_run): their times count.
    others = [m for m in manifests if m.get("run_id") in sharing and m.get("started_at")]
    shared_csvs = [p for m in others for p in sorted(run_dir(m["run_id"]).glob("events-*.csv"))]
    bounds = read_bounds(manifest_event_times([*csvs, *shared_csvs]), [window, *(_window(m) for m in others)])
    return Plan(known, sharing, window, _scope(run_id, window, known, sharing), bounds)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _scope(run_id: str, window: tuple[datetime, datetime], known: list[str], sharing_ids: list[str] = ()) -> str:
    """The rows a reconcile reads: the run's own, those of the runs whose event ids it shares (a replay's original:
    a deduplicating pipeline keeps its copy, under its run id), and rows of no known run published during it."""
    known_list = ", ".join(Q.literal(r) for r in known) or "''"
    own = ", ".join(Q.literal(r) for r in (run_id, *sharing_ids))
    start, end = (Q.timestamp_literal(t) for t in window)
    return (
        f"(run_id IN ({own}) OR ((run_id IS NULL OR run_id NOT IN ({known_list})) "
        f"AND publish_time BETWEEN {start} AND {end}))"
    )


def _anonymous_scope(scope: str, time_column: str, since: datetime) -> str:
    """`scope`, and the rows a sink keeps with no run id and no publish time (a pipeline that keeps no metadata
    of ours): those whose `time_column` (the event's time, or when a dead letter landed) is since `since`. Which
    run such a row belongs to is decided afterwards, by its natural key or its payload (_resolve_identities)."""
    # A sink that keeps no time at all is read whole: its rows of other runs then show as foreign.
    when = f"({time_column} IS NULL OR {time_column} >= {Q.timestamp_literal(since)})"
    return f"({scope} OR (run_id IS NULL AND publish_time IS NULL AND {when}))"


def _reachable(endpoint: str) -> bool:
    address = endpoint.split("://", 1)[-1].rstrip("/")
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or names.LOCAL_HOST, int(port)), timeout=2).close()
        return True
    except (OSError, ValueError):
        return False


def reconcile(
    run_id: str, target: ReconcileTarget, on_step: Step = lambda _: None, engine: Engine | None = None
) -> Report:
    """One reconcile of a finished run against every sink `target` names. ReconcileError when impossible."""
    began = time.monotonic()
    manifest = resolve_run(run_id)
    _check_local_stack(target)
    contract = target.contract()
    run_id = manifest["run_id"]
    csvs = sorted(run_dir(run_id).glob("events-*.csv"))
    if not csvs:
        raise ReconcileError(f"run {run_id} has no events-*.csv beside its manifest", "publish the run again")
    if contract.needs_published_events() and (manifest.get("manifest_version") or 1) < 4:
        raise ReconcileError(
            f"run {run_id} was recorded before manifests kept the published events (manifest version "
            f"{manifest.get('manifest_version')}), and the contract {contract.name} finds events by natural key or "
            "compares converted values, which needs them",
            "publish the run again with this version of the workbench",
        )
    if contract.needs_published_events() and manifest.get("target", {}).get("kind") == "s3":
        raise ReconcileError(
            f"run {run_id} is history written to S3: its manifest names each record by the id the backfill gives it "
            f"and keeps no published event, and the contract {contract.name} finds events by natural key",
            "reconcile a history run with the built-in contract (leave out --sinks): the backfill keeps its ids",
        )
    plan = _plan(manifest, csvs)
    known, sharing, window, scope, bounds = plan.known, plan.sharing, plan.window, plan.scope, plan.bounds
    # One BigQuery client for the reconcile, its jobs in the events dataset's location (read here, before any job).
    needs_bigquery = bool(target.dataset) or (engine is None and target.engine_name() == "bigquery")
    session = bigquery_session(target) if needs_bigquery else None
    own_engine = engine is None
    engine = engine or target.make_engine(session)
    notes: list[str] = [note] if (note := stop_note(manifest)) else []  # an interrupted run says so
    try:
        engine.load_manifest(csvs)
        engine.load_known_runs(known)
        sizes: dict[str, int] = {}
        event_scope = _anonymous_scope(scope, "event_time", bounds.event_times[0])
        letter_scope = _anonymous_scope(scope, "landed_time", window[0] - timedelta(minutes=1))
        if contract.gcs:
            sizes["files"] = _load_gcs(engine, target, contract, event_scope, bounds, on_step)
        if contract.dataset:
            _load_bigquery(engine, target, contract, event_scope, letter_scope, bounds, session, on_step)
        topic_read = bool(contract.dead_letters.topic)
        if topic_read:
            since = window[0] - timedelta(minutes=1)
            try:
                letters = sources.read_dead_letter_topic(target.project, target.endpoints.pubsub, since, on_step)
            except sources.DeadLetterTopicGap as gap:
                # Retention, or a subscription younger than the run, dropped some of its dead letters: the topic is
                # left out of this verdict, as with --no-dead-letter-topic, and the report says why.
                topic_read = False
                notes.append(f"dead-letter topic not compared: {gap.message}")
            else:
                # The topic copy has no source publish time to place a foreign dead letter in the run's window:
                # only this run's are taken from it (foreign dead letters are found through the table's copy).
                entry = f"dead_letters:topic:{contract.dead_letters.topic}"
                engine.load_dead_letter_rows([{**r, "entry": entry} for r in letters
                                              if r["run_id"] == run_id or r["run_id"] in sharing])  # fmt: skip
        if contract.dead_letters.gcs:
            on_step(f"reading dead letters under {contract.dead_letters.gcs.prefix}")
            spec = contract.dead_letters.gcs
            storage = target.storage_client() if spec.prefix.startswith("gs://") else None
            since = window[0] - timedelta(minutes=1)
            engine.load_dead_letter_rows(sources.read_dead_letter_files(spec, since, storage))
        if contract.needs_published_events():
            on_step("finding events by natural key")
            _resolve_identities(engine, contract, manifest, plan)
        _resolve_dead_letters(engine, run_id)
        _claim_by_event_id(engine, run_id)
        on_step("comparing")
        checked = {**target.checked(), Q.DEAD_LETTER_TOPIC: topic_read}
        replay = replays(manifest) is not None
        found = Q.compare(engine, run_id, checked, replay, contract)
        for table in ("sink_events", "dead_letters"):
            for row in engine.run(f"SELECT sink, COUNT(*) AS n FROM {engine.tables[table]} GROUP BY sink"):
                sizes[row["sink"]] = int(row["n"])
        on_step("finding which fields were altered")
        altered, altered_notes = altered_fields(engine, contract, run_id, csvs, bounds.event_times, session,
                                                target.project)  # fmt: skip
        notes.extend(altered_notes)
        by_type, by_kind = found["by_type"], found["by_kind"]
        report = Report(
            run_id=run_id,
            run={k: manifest.get(k) for k in ("status", "started_at", "finished_at", "target", "totals", "plan")},
            checked=checked,
            by_type=by_type,
            by_kind=by_kind,
            problems=found["problems"],
            raw_duplicates=found["raw_duplicates"],
            unexpected=found["unexpected"],
            foreign=found["foreign"],
            latency=found["latency"],
            histogram=found["histogram"],
            sizes=sizes,
            allow_foreign=target.allow_foreign,
            engine=engine.name,
            notes=notes,
            contract=contract.name,
            entries=entry_counts(contract, found["entry_counts"], by_type, by_kind, altered),
            altered_fields=altered,
            findings=_findings(found["findings"]),
        )
    finally:
        if own_engine:
            engine.close()
    if replay:
        held = sum(int(r.get("held_by_earlier_run") or 0) for r in report.by_type + report.by_kind)
        report.notes.append(
            f"run {run_id} replays the event ids of run {replays(manifest)}: {held:,} of its events are held only "
            f"under an earlier run's id ({', '.join(sharing) or 'no such run is recorded here'}), as a pipeline "
            "that deduplicates by event id keeps them"
        )
    if target.dataset and any(p["problem"] in ("missing", "missing_in_bigquery") for p in report.problems):
        report.notes.append(bounds.note())  # a row outside the bound is not read: say where it was looked for
    report.elapsed_s = round(time.monotonic() - began, 3)
    return report


def _findings(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for r in rows:
        found.setdefault(r["finding"], []).append(r["event_id"])
    return found


def entry_counts(contract: Contract, rows: list[dict[str, Any]], by_type: list[dict[str, Any]],
                 by_kind: list[dict[str, Any]], altered: list[dict] = ()) -> list[dict[str, Any]]:  # fmt: skip
    """Per contract entry (each table, child table, type's files and dead-letter place): the events it should
    hold, how many of them it holds, how many it lacks, how many it holds altered, and its rows no event of the run
    explains. What a user reads to see which part of their pipeline loses what. A child table's rows are read
    joined to their parent's, so it shares its parent's counts but its own altered events (those whose altered
    fields are its records: reconcile.altered)."""
    found = {r["entry"]: r for r in rows if r.get("entry")}
    expected_of_type = {r["event_type"]: int(r["expected"]) for r in by_type}
    malformed = sum(int(r["sent"]) for r in by_kind)
    out = []
    for entry in contract.entries:
        kind, _, rest = entry.partition(":")
        row = found.get(entry, {})
        if kind == "gcs":
            expected = expected_of_type.get(rest, 0)
        elif kind == "bigquery":
            table = next((t for t in contract.tables if t.table == rest), None)
            if table is None:
                parent, child = next((t, c) for t in contract.tables for c in t.children if c.table == rest)
                hit = {a["event_id"] for a in altered
                       if a["sink"] == parent.entry and a["field"].startswith(f"{child.field}")}  # fmt: skip
                row = {**found.get(parent.entry, {}), "altered": len(hit)}
                expected = expected_of_type.get(parent.event_type, 0)
            else:
                expected = expected_of_type.get(table.event_type, 0)
        else:
            expected = malformed if contract.malformed == "dead_lettered" else None
        events = int(row.get("events") or 0)
        out.append({
            "entry": entry,
            "expected": expected,
            "held": events,
            "missing": None if expected is None else max(expected - events, 0),
            "altered": int(row.get("altered") or 0),
            "rows": int(row.get("rows") or 0),
            "unexplained": int(row.get("unexplained") or 0),
        })  # fmt: skip
    return out


def _resolve_identities(engine: Engine, contract: Contract, manifest: dict[str, Any], plan: Plan) -> None:
    """Give each sink row that keeps no event id of ours the event it holds, by its natural key: the published
    events of this run and of the runs whose times overlap it (their rows are theirs, not foreign) are keyed as
    each sink keeps them (contract_sql.expected_select), and a row whose key one event has takes that event's id
    and run. A key two published events share is left unmatched: reported as a collision, never merged."""
    from reconcile import contract_sql

    run_id = manifest["run_id"]
    runs = {run_id: sorted(run_dir(run_id).glob("events-*.csv"))}
    low, high = plan.bounds.event_times
    for other in list_runs():
        rid = other.get("run_id")
        if not rid or rid == run_id or (other.get("manifest_version") or 1) < 4 or not other.get("started_at"):
            continue
        start, end = _window(other)
        if start <= high and end >= low:
            runs[rid] = sorted(run_dir(rid).glob("events-*.csv"))
    engine.load_published(runs)
    sinks: list[Any] = list(contract.tables)
    if contract.gcs:
        sinks.append(contract.gcs)
    for sink in sinks:
        types = [sink.event_type] if hasattr(sink, "event_type") else list(EVENT_TYPES)
        for event_type in types:
            typed = engine.typed_published(event_type)
            select = contract_sql.expected_select(sink, contract, event_type, typed, engine.arrays)
            engine.run(f"INSERT INTO {engine.tables['expected']} {select}")
    t = engine.tables
    # One rewrite of sink_events, not an UPDATE (DuckDB rewrites every updated row; this is a hash join): a row
    # with no event id takes the id and run of the one published event with its key; every row takes the digest
    # of its event as its sink keeps it, so the comparison needs no join with `expected` per row.
    columns = {"event_id": "COALESCE(e.event_id, k.event_id)", "run_id": "COALESCE(e.run_id, k.run_id)",
               "expected_digest": "COALESCE(k.digest, x.digest)"}  # fmt: skip
    select = ", ".join(f"{columns.get(c, f'e.{c}')} AS {c}" for c in SINK_EVENT_COLUMNS)
    engine.run(
        f"CREATE OR REPLACE TABLE {t['sink_events']} AS SELECT {select} FROM {t['sink_events']} AS e "
        f"LEFT JOIN (SELECT entry, key_digest, MIN(event_id) AS event_id, MIN(run_id) AS run_id, MIN(digest) AS digest "
        f"FROM {t['expected']} GROUP BY entry, key_digest HAVING COUNT(DISTINCT event_id) = 1) AS k "
        # equalities only, so both are hash joins: a row keyed by id has no key digest, a keyless row no event id
        "ON k.entry = e.entry AND k.key_digest = e.key_digest "
        f"LEFT JOIN (SELECT * FROM {t['expected']} WHERE run_id = {Q.literal(manifest['run_id'])}) AS x "
        "ON x.entry = e.entry AND x.event_id = e.event_id"
    )


def _claim_by_event_id(engine: Engine, run_id: str) -> None:
    """Rows with one of the run's event ids but no run id (a pipeline that carries the event_id attribute and
    not run_id) are the run's: its manifest explains them, so they are neither foreign nor another run's."""
    t = engine.tables
    for table in ("sink_events", "dead_letters"):
        engine.run(
            f"UPDATE {t[table]} SET run_id = {Q.literal(run_id)} WHERE run_id IS NULL AND event_id IN "
            f"(SELECT event_id FROM {t['manifest']} WHERE outcome = 'published')"
        )


def _resolve_dead_letters(engine: Engine, run_id: str) -> None:
    """Give a dead letter kept with no event id (a pipeline's own table or files) the run's event it holds: the one
    whose published bytes have its MD5. Events sent with the same bytes share its copies."""
    t = engine.tables
    if not engine.run(f"SELECT 1 AS found FROM {t['dead_letters']} WHERE event_id IS NULL LIMIT 1"):
        return
    columns = ", ".join("m.event_id" if c == "event_id" else Q.literal(run_id) if c == "run_id" else f"d.{c}"
                        for c in DEAD_LETTER_COLUMNS)  # fmt: skip
    engine.run(
        f"INSERT INTO {t['dead_letters']} SELECT {columns} "
        f"FROM {t['dead_letters']} AS d JOIN (SELECT DISTINCT event_id, payload_digest FROM {t['manifest']} "
        "WHERE outcome = 'published') AS m ON m.payload_digest = d.payload_digest WHERE d.event_id IS NULL"
    )
    engine.run(
        f"DELETE FROM {t['dead_letters']} WHERE event_id IS NULL AND payload_digest IN "
        f"(SELECT payload_digest FROM {t['manifest']} WHERE outcome = 'published')"
    )


def _load_gcs(engine: Engine, target: ReconcileTarget, contract: Contract, scope: str, bounds: ReadBounds,
              on_step: Step) -> int:  # fmt: skip
    gcs = contract.gcs
    root = gcs.root
    if "://" not in root and not Path(root).is_dir():
        raise NotYetReadable(
            f"the output root {root} does not exist",
            "pass the --output-root the pipeline wrote to (run-pipeline's default is ./output)",
        )
    # Read through a client made for the target's storage endpoint (Beam's gs:// filesystem would find an emulator
    # only through the process environment: apache_beam/io/gcp/gcsio.py create_storage_client takes no endpoint).
    storage = target.storage_client() if root.startswith("gs://") else None
    if engine.external and (gcs.format != "jsonl" or gcs.gzip):
        raise ReconcileError(
            f"the BigQuery engine reads gs:// files through external tables of JSON lines, and {contract.name} says "
            f"its files are {gcs.format}{' gzipped' if gcs.gzip else ''}",
            "pass --engine duckdb (the files are then read on this machine)",
        )
    on_step(f"listing {root}")
    # Only the files written since the runs compared began can hold their events: older ones are not read (nor
    # copied from gs://), and the external tables name only their folders.
    files = files_written_since(sources.list_event_files(root, gcs, storage), bounds.files_since)
    # An engine that reads the tree where it lies (BigQuery's external tables) needs no local copies.
    where = contextlib.nullcontext({f.uri: f.uri for f in files}) if engine.external else None
    with where or sources.local_copies(files, storage) as local:
        engine.load_files(
            [
                {
                    "path": local[f.uri],
                    "uri": f.uri,
                    "container_type": f.container_type,
                    "container_minute": f.container_minute,
                    "name_ok": f.name_ok,
                    "updated": f.updated,
                }
                for f in files
            ]
        )
        for event_type in EVENT_TYPES:
            mine = [f for f in files if f.container_type == event_type]
            paths = [local[f.uri] for f in mine]
            prefixes = folder_prefixes([f.uri for f in mine], f"{root.rstrip('/')}/{event_type}")
            on_step(f"reading {len(paths):,} {event_type} files")
            engine.load_gcs_lines(event_type, paths, scope, root, prefixes, gcs=gcs, contract=contract)
    return len(files)


def bigquery_statements(target: ReconcileTarget, scope: str, bounds: ReadBounds, contract: Contract | None = None,
                        letter_scope: str | None = None) -> list[tuple[str, str, str]]:  # fmt: skip
    """(engine table, SELECT, source table) of every read of the BigQuery sinks the contract names, each bounded by
    its table's partition column (contract_sql.table_select, dead_letter_table_select)."""
    from reconcile import contract_sql

    contract = contract or target.contract()
    prefix = f"{target.project}.{contract.dataset}"

    def fqn(table: str) -> str:
        return f"`{prefix}.{table}`"

    statements = [
        ("sink_events", contract_sql.table_select(t, contract, fqn, bounds.event_times, scope), t.table)
        for t in contract.tables
    ]  # fmt: skip
    letters = contract.dead_letters.table
    if letters:
        select = contract_sql.dead_letter_table_select(letters, fqn, bounds.ingested_since, letter_scope or scope)
        statements.append(("dead_letters", select, letters.table))
    return statements


def _load_bigquery(engine: Engine, target: ReconcileTarget, contract: Contract, scope: str, letter_scope: str,
                   bounds: ReadBounds, session: BigQuerySession, on_step: Step) -> None:  # fmt: skip
    from google.api_core.exceptions import GoogleAPICallError, NotFound

    for table, sql, source in bigquery_statements(target, scope, bounds, contract, letter_scope):
        on_step(f"reading BigQuery {contract.dataset}.{source}")
        try:
            engine.load_select(table, sql, session.client, session.location)
        except NotFound as exc:
            raise NotYetReadable(
                f"BigQuery table {target.project}.{contract.dataset}.{source} not found: {exc.message}",
                "apply the model (`workbench bq apply`), or name the dataset the pipeline wrote to with --dataset",
            ) from None
        except GoogleAPICallError as exc:
            raise ReconcileError(
                f"cannot read {contract.dataset}.{source} from BigQuery: {exc.message}",
                "check the emulator (`workbench status`) or your BigQuery roles (docs/reconcile.md)",
            ) from None


def estimate(run_id: str, target: ReconcileTarget, on_step: Step = lambda _: None) -> dict[str, Any]:
    """What a reconcile of run_id would have BigQuery scan, statement by statement, from dry runs: nothing is
    run, written or billed (`workbench reconcile --dry-run`).

    Every statement that reads a BigQuery sink is dry-run as it would be sent, with its bounds (partition filters,
    and on the BigQuery engine the external tables over the run's folders, as temporary table definitions). The
    loads (manifest, listing, topic messages) are load jobs, which are free; the comparison then reads only the
    scratch tables those fill (about the run's size), so it is named but not estimated: its tables do not exist
    before a reconcile. {"statements": [{"statement", "reads", "bytes"}], "notes": [...], "engine": name}."""
    from google.api_core.exceptions import GoogleAPICallError

    from reconcile.engine import dry_run_bytes, external_config, external_lines

    manifest = resolve_run(run_id)
    _check_local_stack(target)
    run_id = manifest["run_id"]
    plan = _plan(manifest, sorted(run_dir(run_id).glob("events-*.csv")))
    engine_name = target.engine_name()
    if not (target.dataset or engine_name == "bigquery"):
        raise ReconcileError(
            "--dry-run estimates what BigQuery would scan, and this reconcile reads nothing from BigQuery "
            "(--no-bigquery on the DuckDB engine)",
            "leave out --dry-run: the reconcile runs on this machine only",
        )
    session = bigquery_session(target)
    if engine_name == "bigquery":
        check_locations(target, session)
    statements: list[dict[str, Any]] = []

    def dry(label: str, reads: str, sql: str, definitions: dict | None = None) -> None:
        on_step(f"dry run: {label}")
        try:
            scanned = dry_run_bytes(session.client, sql, session.location, definitions)
        except GoogleAPICallError as exc:
            raise ReconcileError(
                f"BigQuery refused the dry run of {label}: {getattr(exc, 'message', exc)}",
                "check the dataset (`workbench bq apply`) and your BigQuery roles (docs/reconcile.md)",
            ) from None
        statements.append({"statement": label, "reads": reads, "bytes": scanned})

    if target.dataset:
        day = "%Y-%m-%d"
        low, high = (t.strftime(day) for t in plan.bounds.event_times)
        for _, sql, source in bigquery_statements(target, plan.scope, plan.bounds):
            reads = (f"ingest_time since {plan.bounds.ingested_since.strftime(day)}" if source == rows.DEAD_LETTER_TABLE
                     else f"event times {low} .. {high}")  # fmt: skip
            dry(f"read {target.dataset}.{source}", f"the partitions of {reads}", sql)
    notes: list[str] = []
    if target.endpoints.bigquery:  # bqemulator has no cost model: its dry runs validate each statement, 0 bytes
        notes.append("the BigQuery emulator answers 0 bytes to every dry run (it has no cost model)")
    if target.output_root and engine_name == "bigquery" and target.external():
        on_step(f"listing {target.output_root}")
        files = files_written_since(
            sources.list_event_files(target.output_root, target.contract().gcs, target.storage_client()),
            plan.bounds.files_since,
        )
        root = target.output_root.rstrip("/")
        for event_type in EVENT_TYPES:
            uris = [f.uri for f in files if f.container_type == event_type]
            prefixes = folder_prefixes(uris, f"{root}/{event_type}")
            if not prefixes:
                continue
            dry(f"read GCS {event_type} files", f"{len(uris):,} files in {len(prefixes):,} folders (external table)",
                f"SELECT * FROM {external_lines('lines', prefixes)}", {"lines": external_config(prefixes)})  # fmt: skip
    elif target.output_root:
        notes.append(
            "the GCS tree is read "
            + ("by DuckDB on this machine" if engine_name == "duckdb" else "from local copies, by a load job (free)")
            + ": BigQuery scans none of it"
        )
    if engine_name == "bigquery":
        notes.append(
            "not estimated: the comparison's queries, which read only this reconcile's scratch tables (about the "
            "size of the rows above and of the manifest); load jobs are free"
        )
    return {"run_id": run_id, "engine": engine_name, "statements": statements, "notes": notes}


def _check_local_stack(target: ReconcileTarget) -> None:
    """The local project with no emulator known means a local stack that is down, not real Google Cloud."""
    if target.project != names.DEFAULT_PROJECT:
        return
    down = [name for name, wanted, known in (
        ("BigQuery", target.dataset, target.endpoints.bigquery),
        ("Pub/Sub", target.read_dead_letter_topic, target.endpoints.pubsub),
    ) if wanted and not known]  # fmt: skip
    if down:
        raise ReconcileError(
            f"no {' or '.join(down)} emulator is known for the local project {names.DEFAULT_PROJECT}: "
            "the local stack is not running",
            "start it with `workbench up` (or point at real GCP with --project P)",
        )


def _bigquery_client(target: ReconcileTarget, location: str | None = None) -> Any:
    emulator = target.endpoints.bigquery
    if emulator and not _reachable(emulator):
        raise ReconcileError(
            f"no BigQuery emulator answers at {emulator}",
            "start the local stack (`workbench up`), or pass --no-bigquery to reconcile without BigQuery",
        )
    # Built first with no location, to read the events dataset's (bigquery_session); then with it, for the jobs.
    return bigquery_client(target.project, emulator, location=location)


def reconcile_waiting(
    run_id: str,
    target: ReconcileTarget,
    wait_s: float,
    on_poll: Callable[[Report | None, float, str], None] = lambda *_: None,
    on_step: Step = lambda _: None,
) -> Report:
    """Reconcile, and again every target.poll_interval() until it matches, nothing changed for STABLE_FOR_S, or
    wait_s ran out; then return the last report. A run still publishing is waited for too, as long as its
    publisher lives: a dead one (publisher.manifest.run_state) is refused at once, since it will never finish."""
    deadline = time.monotonic() + wait_s
    while True:  # the publish first
        try:
            resolve_run(run_id)
            break
        except StillPublishing as publishing:
            if time.monotonic() >= deadline:
                raise StillPublishing(
                    f"run {publishing.run_id} is still publishing after {wait_s:g} s of waiting (its publisher is "
                    "alive)",
                    "wait for the publish to end, or pass a longer --wait",
                    run_id=publishing.run_id,
                ) from None
        on_poll(None, deadline - time.monotonic(), "waiting for the publish to finish")
        time.sleep(min(POLL_INTERVAL_S, max(0.05, deadline - time.monotonic())))
    last: tuple | None = None
    stable_since = time.monotonic()
    while True:
        report = reconcile(run_id, target, on_step)
        remaining = deadline - time.monotonic()
        on_poll(report, remaining, "polling")
        if report.matched or remaining <= 0:
            return report
        signature = (tuple(sorted(report.sizes.items())), tuple(sorted(report.problem_counts.items())))
        if signature != last:
            last, stable_since = signature, time.monotonic()
        elif time.monotonic() - stable_since >= STABLE_FOR_S:
            report.notes.append(f"the sinks did not change for {STABLE_FOR_S:g} s: stopped waiting")
            return report
        time.sleep(min(target.poll_interval(), max(0.0, remaining)))
