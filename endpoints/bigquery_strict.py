"""Strict BigQuery mode: a client that refuses what real BigQuery refuses and bqemulator lets through.

bqemulator (DuckDB-backed) ignores require_partition_filter, locations and job ids, so code that runs on the local
stack can still fail on every real run. With WORKBENCH_BIGQUERY_STRICT=1 the one BigQuery client factory
(endpoints.bigquery.bigquery_client) wraps its client in StrictClient, which checks each job call before sending it
and delegates everything else unchanged:

1. A read (SELECT, CTE, subquery, join, CTAS, DML) of a table whose DDL says require_partition_filter = TRUE needs
   a predicate on its partitioning column compared with constants in the WHERE (or JOIN/MERGE ON) of the scope that
   reads it, or pushed down from every scope that reads that one; a disjunction counts only when every branch does
   (https://cloud.google.com/bigquery/docs/querying-partitioned-tables, "Require a partition filter in queries"
   and "Use a constant filter expression"). Answer: BadRequest with BigQuery's own text.
2. Every job call names its location, in the call or through the client: query, query_and_wait, load_table_from_*,
   copy_table, extract_table, create_job, get_job, cancel_job and query-result lookups. BigQuery itself needs the
   location on jobs.get / jobs.cancel / jobs.getQueryResults for any job outside the US and EU multi-regions
   (https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/get, query parameter `location`); the workbench
   asks it of every job call so that a user's regional dataset works. Answer: StrictModeError naming the rule.
3. A job id already used in the same project and location: BigQuery answers 409 Conflict ("Already Exists: Job
   ...") to jobs.insert (https://cloud.google.com/bigquery/docs/running-jobs: a client-generated id makes a retried
   insert safe because a second insert of the id is refused). Answer: google.api_core.exceptions.Conflict.

    >>> rules = {"user_activity": "timestamp"}
    >>> [m[:61] for m in partition_filter_problems("SELECT * FROM ds.user_activity", rules, "p")]
    ["Cannot query over table 'p.ds.user_activity' without a filter"]

The partition rules ({table: partitioning column}) are given, not looked up: this bottom layer cannot import the DDL
(ddl.model reads them from the DDL text, the one source of truth). wrap(client, rules=...) takes them; otherwise
they are read from WORKBENCH_BIGQUERY_STRICT_RULES, JSON such as {"user_activity": "timestamp"}, which
tests/conftest.py sets from ddl.model for the suite and every process it starts (without it no table has a rule).
Views and table functions are not expanded (a read through a view is not checked), and a table is known by its name
in any dataset.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from endpoints.errors import FixableError
from endpoints.sql_statements import split_statements

STRICT_ENV = "WORKBENCH_BIGQUERY_STRICT"
JOBS_ENV = "WORKBENCH_BIGQUERY_STRICT_JOBS"  # the folder of the used-job-id registry (rule 3)
RULES_ENV = "WORKBENCH_BIGQUERY_STRICT_RULES"  # JSON {table: partitioning column} (rule 1)
JOBS_GET_DOC = "https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/get"

# Calls that insert a job (checked: location, SQL, job id) and calls that look one up (checked: location).
JOB_CALLS = frozenset(
    {
        "query",
        "query_and_wait",
        "load_table_from_file",
        "load_table_from_json",
        "load_table_from_uri",
        "load_table_from_dataframe",
        "copy_table",
        "extract_table",
        "create_job",
    }
)
LOOKUP_CALLS = frozenset({"get_job", "cancel_job", "_get_query_results"})


class StrictModeError(FixableError):
    """A call that strict BigQuery mode refuses by the workbench's own rule (not an answer BigQuery would give)."""


def strict_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------------------------------ rule 1: partition filter


def partition_filter_message(table: str, column: str) -> str:
    """BigQuery's own words for a read without a usable partition filter."""
    return (
        f"Cannot query over table '{table}' without a filter over column(s) '{column}' "
        "that can be used for partition elimination"
    )


def partition_filter_problems(
    sql: str, partitioned: Mapping[str, str], default_project: str | None = None
) -> list[str]:
    """BigQuery's error for each table of `partitioned` ({table name: partitioning column}) that `sql` reads without
    a predicate BigQuery can prune partitions with; [] when there is none, or when sqlglot cannot read the SQL
    (then the emulator answers as it would have)."""
    if not partitioned or not any(name.lower() in sql.lower() for name in partitioned):
        return []
    from sqlglot import exp

    statements = _parse_script(sql)
    variables = _script_variables(statements)
    problems: list[str] = []
    for statement in statements:
        # A view's or function's body runs when it is queried, not when it is created.
        if isinstance(statement, exp.Command) or (
            isinstance(statement, exp.Create) and statement.kind not in ("TABLE", "SCHEMA")
        ):
            continue
        for table in statement.find_all(exp.Table):
            column = partitioned.get(table.name)
            if column is None or table.name in _cte_names(table) or _read_scope(table) is None:
                continue
            if not _filtered(table, column, variables):
                path = ".".join(p for p in (table.catalog or default_project or "", table.db, table.name) if p)
                message = partition_filter_message(path, column)
                if message not in problems:
                    problems.append(message)
    return problems


def _parse_script(sql: str) -> list[Any]:
    """The statements of `sql`; when sqlglot cannot read the whole script, each statement it can read on its own
    (a statement it cannot read is left to the service)."""
    import sqlglot

    try:
        return [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
    except sqlglot.errors.SqlglotError:
        pass
    statements = []
    for text in split_statements(sql):
        try:
            statements += [s for s in sqlglot.parse(text, read="bigquery") if s is not None]
        except sqlglot.errors.SqlglotError:
            continue
    return statements


def _script_variables(statements: list[Any]) -> set[str]:
    """Names a script declares (DECLARE x; FOR x IN ...): constants for the statements that use them."""
    from sqlglot import exp

    names: set[str] = set()
    for statement in statements:
        for item in statement.find_all(exp.DeclareItem):
            names.update(i.name for i in (item.this if isinstance(item.this, list) else [item.this]))
        for loop in statement.find_all(exp.ForIn):
            if isinstance(loop.this, exp.In):
                names.add(loop.this.this.name)
    return names


def _cte_names(node: Any) -> set[str]:
    from sqlglot import exp

    names = set()
    while node is not None:
        with_ = node.args.get("with_") or node.args.get("with") if isinstance(node, exp.Expression) else None
        if with_ is not None:
            names.update(cte.alias for cte in with_.expressions)
        node = node.parent
    return names


def _read_scope(table: Any) -> tuple[Any, list[Any]] | None:
    """(the statement or SELECT that reads `table`, the conditions that may filter it there), or None when the
    table is not read (a CREATE or INSERT target, a CLONE source, a DROP...)."""
    from sqlglot import exp

    parent = table.parent
    if isinstance(parent, exp.From):
        return parent.parent, [parent.parent.args.get("where")]
    if isinstance(parent, exp.Join):
        return parent.parent, [parent.parent.args.get("where"), parent.args.get("on")]
    if isinstance(parent, exp.Delete | exp.Update) and parent.this is table:
        return parent, [parent.args.get("where")]
    if isinstance(parent, exp.Merge) and (parent.this is table or parent.args.get("using") is table):
        return parent, [parent.args.get("on")]
    return None


def _sources(scope: Any) -> set[str]:
    """The names the scope's own columns may be qualified with (its tables' and subqueries' aliases and names)."""
    from sqlglot import exp

    nodes = [scope.args.get(key) for key in ("this", "using", "from_", "from")]
    nodes += [join.this for join in scope.args.get("joins") or []]
    names = set()
    for node in nodes:
        node = node.this if isinstance(node, exp.From) else node
        if isinstance(node, exp.Table | exp.Subquery):
            names |= {node.alias_or_name, node.name}
    return names - {""}


def _filtered(table: Any, column: str, variables: set[str]) -> bool:
    scope, conditions = _read_scope(table)
    sources = _sources(scope)
    names = {table.alias_or_name, table.name}
    if any(_prunes(c, column, names, sources, variables) for c in conditions if c is not None):
        return True
    return _consumers_prune(scope, column, variables)


def _consumers_prune(select: Any, column: str, variables: set[str]) -> bool:
    """A filter on the column in every scope that reads this one (a derived table or a CTE), which BigQuery pushes
    down to the table when the column passes through under its own name."""
    from sqlglot import exp

    node = select
    while isinstance(node.parent, exp.Union | exp.Paren):  # a filter on a UNION reaches every branch
        node = node.parent
    parent = node.parent
    if isinstance(parent, exp.Subquery) and isinstance(parent.parent, exp.From | exp.Join):
        return _reader_prunes(parent, column, variables)
    if isinstance(parent, exp.CTE):
        root = parent
        while root.parent is not None:
            root = root.parent
        readers = [
            t
            for t in root.find_all(exp.Table)
            if t.name == parent.alias and not t.db and isinstance(t.parent, exp.From | exp.Join)
        ]
        return all(_reader_prunes(t, column, variables) for t in readers)  # an unread CTE reads nothing
    return False


def _reader_prunes(source: Any, column: str, variables: set[str]) -> bool:
    scope, conditions = _read_scope(source)
    names = {source.alias_or_name}
    sources = _sources(scope)
    if any(_prunes(c, column, names, sources, variables) for c in conditions if c is not None):
        return True
    return _consumers_prune(scope, column, variables)


def _prunes(condition: Any, column: str, names: set[str], sources: set[str], variables: set[str]) -> bool:
    """Whether `condition` holds a predicate on `column` alone against constants that BigQuery can prune with."""
    from sqlglot import exp

    c = condition.this if isinstance(condition, exp.Where | exp.Paren) else condition
    recurse = functools.partial(_prunes, column=column, names=names, sources=sources, variables=variables)
    if isinstance(c, exp.Paren):
        return recurse(c)
    if isinstance(c, exp.And):
        return recurse(c.this) or recurse(c.expression)
    if isinstance(c, exp.Or):  # "partition = x OR other_column = y" prunes nothing
        return recurse(c.this) and recurse(c.expression)
    if isinstance(c, exp.Not):
        return recurse(c.this)
    on_column = functools.partial(_on_column, column=column, names=names)
    constant = functools.partial(_constant, sources=sources, variables=variables)
    if isinstance(c, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE | exp.NullSafeEQ | exp.NullSafeNEQ):
        return (on_column(c.this) and constant(c.expression)) or (on_column(c.expression) and constant(c.this))
    if isinstance(c, exp.Between):
        return on_column(c.this) and constant(c.args["low"]) and constant(c.args["high"])
    if isinstance(c, exp.In):
        values = [*c.expressions, *([c.args["unnest"]] if c.args.get("unnest") else [])]
        return on_column(c.this) and not c.args.get("query") and bool(values) and all(map(constant, values))
    if isinstance(c, exp.Is):
        return on_column(c.this)
    return False


def _on_column(side: Any, column: str, names: set[str]) -> bool:
    """The side reads the partitioning column of this table and nothing else (DATE(ts), TIMESTAMP_TRUNC(ts, DAY))."""
    from sqlglot import exp

    columns = list(side.find_all(exp.Column))
    return (
        bool(columns)
        and not side.find(exp.Select)
        and all(c.name == column and (not c.table or c.table in names) for c in columns)
    )


def _constant(side: Any, sources: set[str], variables: set[str]) -> bool:
    """No column of the query and no subquery: literals, parameters, functions of them, script variables."""
    from sqlglot import exp

    if side.find(exp.Select):  # a subquery is a dynamic expression: it prunes nothing
        return False
    for c in side.find_all(exp.Column):
        variable = (c.table and c.table not in sources) or (not c.table and c.name in variables)
        if not variable:
            return False
    return True


def rules_from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """{table: partitioning column} from WORKBENCH_BIGQUERY_STRICT_RULES ({} when unset): the tables declared with
    require_partition_filter, as ddl.model.partition_rules() reads them from the DDL."""
    text = environ.get(RULES_ENV, "").strip()
    if not text:
        return {}
    try:
        rules = json.loads(text)
    except ValueError:
        rules = None
    if not isinstance(rules, dict) or not all(isinstance(v, str) for v in rules.values()):
        raise StrictModeError(
            f"{RULES_ENV} is not a JSON object of table names to partitioning columns: {text[:80]!r}",
            'set it to e.g. {"user_activity": "timestamp"} (ddl.model.partition_rules()), or unset it',
        )
    return rules


# -------------------------------------------------------------------------------------------- rule 2: location


def location_problem(call: str, location: str | None, job: str | None = None) -> StrictModeError | None:
    """The refusal of a job call that names no location (neither in the call nor through the client)."""
    if location:
        return None
    subject = f"{call} of job {job}" if job else call
    return StrictModeError(
        f"strict BigQuery mode: {subject} names no location. Every job call names its location: BigQuery answers "
        f"404 to jobs.get/cancel/getQueryResults without it for any job outside US/EU ({JOBS_GET_DOC})",
        "pass location=<the dataset's location> to the call, or build the client with location=...",
    )


# --------------------------------------------------------------------------------------------- rule 3: job ids


def conflict(project: str, location: str, job_id: str) -> Exception:
    """BigQuery's answer to a jobs.insert with an id already used in the project and location."""
    from google.api_core.exceptions import Conflict

    message = f"Already Exists: Job {project}:{location}.{job_id}"
    return Conflict(message, errors=[{"reason": "duplicate", "message": message}])


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


class JobRegistry:
    """The job ids used on each BigQuery endpoint, as files in a folder every process of a run shares.

    bqemulator 1.4.0 cannot serve as the registry: it accepts a reused job id without a 409, and it replaces the id
    of a load job with one of its own (jobs.get of the given id answers 404), as measured against it. So the ids live
    here: one file per (endpoint, project, location, job id), created with O_EXCL so that two processes (the test,
    the pipeline subprocess, a spawned CLI) cannot both claim an id. The folder is $WORKBENCH_BIGQUERY_STRICT_JOBS
    (tests/conftest.py gives each test session a fresh one), else one under the system's temp folder. A file holds
    the id the service gave the job when it differs, so that jobs.get of the given id finds the job as BigQuery's
    would. `forget(endpoint)` clears an endpoint when a fresh emulator starts on it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> JobRegistry:
        user = getattr(os, "getuid", lambda: "user")()  # one folder per user: another's would not be writable
        folder = environ.get(JOBS_ENV) or Path(tempfile.gettempdir()) / f"workbench-bigquery-strict-jobs-{user}"
        return cls(Path(folder))

    def _path(self, endpoint: str, project: str, location: str, job_id: str) -> Path:
        return self.folder / _digest(endpoint) / _digest(project, location.lower(), job_id)

    def claim(self, endpoint: str, project: str, location: str, job_id: str) -> bool:
        """True when the id was free (and is now used); False when it was used before."""
        path = self._path(endpoint, project, location, job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
        return True

    def release(self, endpoint: str, project: str, location: str, job_id: str) -> None:
        """The id is free again: the insert that claimed it made no job."""
        self._path(endpoint, project, location, job_id).unlink(missing_ok=True)

    def record_actual_id(self, endpoint: str, project: str, location: str, job_id: str, actual: str) -> None:
        self._path(endpoint, project, location, job_id).write_text(actual, encoding="utf-8")

    def actual_id(self, endpoint: str, project: str, location: str, job_id: str) -> str | None:
        try:
            return self._path(endpoint, project, location, job_id).read_text(encoding="utf-8") or None
        except OSError:
            return None

    def forget(self, endpoint: str) -> None:
        folder = self.folder / _digest(endpoint)
        for path in folder.glob("*") if folder.is_dir() else ():
            path.unlink(missing_ok=True)


def endpoint_of(client: Any) -> str:
    """The base URL a google-cloud-bigquery client sends to (the emulator's, or BigQuery's)."""
    connection = getattr(client, "_connection", None)
    return str(getattr(connection, "API_BASE_URL", "") or "https://bigquery.googleapis.com").rstrip("/")


# ---------------------------------------------------------------------------------------------- the client


class StrictClient:
    """google.cloud.bigquery.Client with the three rules checked before each job call; everything else (and every
    attribute, read or set) goes to the wrapped client unchanged."""

    def __init__(
        self, client: Any, rules: Mapping[str, str] | None = None, registry: JobRegistry | None = None
    ) -> None:
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_rules", rules)
        object.__setattr__(self, "_registry", registry or JobRegistry.from_environment())

    @property
    def unwrapped(self) -> Any:
        return self._client

    @property
    def rules(self) -> Mapping[str, str]:
        return self._rules if self._rules is not None else rules_from_environment()

    def __getattr__(self, name: str) -> Any:
        if name in JOB_CALLS:
            return functools.partial(self._job_call, name)
        if name in LOOKUP_CALLS:
            return functools.partial(self._lookup, name)
        return getattr(self._client, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._client, name, value)

    def __enter__(self) -> StrictClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"StrictClient({self._client!r})"

    def _job_call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self._client, name)
        given = inspect.signature(method).bind_partial(*args, **kwargs).arguments
        location, job_id, sql = given.get("location"), given.get("job_id"), given.get("query")
        if name == "create_job" and isinstance(given.get("job_config"), Mapping):
            resource = given["job_config"]
            location = resource.get("jobReference", {}).get("location")
            job_id = resource.get("jobReference", {}).get("jobId")
            sql = resource.get("configuration", {}).get("query", {}).get("query")
        location = location or self._client.location
        problem = location_problem(name, location)
        if problem:
            raise problem
        project = given.get("project") or self._client.project
        for message in partition_filter_problems(sql, self.rules, project)[:1] if isinstance(sql, str) else ():
            from google.api_core.exceptions import BadRequest

            raise BadRequest(message, errors=[{"reason": "invalidQuery", "message": message}])
        endpoint = endpoint_of(self._client)
        if job_id and not self._registry.claim(endpoint, project, location, job_id):
            raise conflict(project, location, job_id)
        try:
            job = method(*args, **kwargs)
        except Exception as exc:
            from google.api_core.exceptions import Conflict

            # A refused insert (4xx) made no job, and BigQuery takes its id again. After a 5xx or a timeout BigQuery
            # may or may not have made it (the retry then gets 409, or goes through): strict mode lets the retry
            # through rather than refuse an id no job may hold.
            if job_id and not isinstance(exc, Conflict):
                self._registry.release(endpoint, project, location, job_id)
            raise
        actual = getattr(job, "job_id", None)
        if job_id and isinstance(actual, str) and actual != job_id:
            self._registry.record_actual_id(endpoint, project, location, job_id, actual)
        return job

    def _lookup(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self._client, name)
        bound = inspect.signature(method).bind_partial(*args, **kwargs)
        job = bound.arguments.get("job_id")
        location = bound.arguments.get("location") or getattr(job, "location", None) or self._client.location
        job_name = job if isinstance(job, str) else getattr(job, "job_id", None)
        problem = location_problem(name, location, job_name)
        if problem:
            raise problem
        if isinstance(job, str):
            project = bound.arguments.get("project") or self._client.project
            actual = self._registry.actual_id(endpoint_of(self._client), project, location, job)
            if actual:
                bound.arguments["job_id"] = actual
        return method(*bound.args, **bound.kwargs)


def wrap(client: Any, rules: Mapping[str, str] | None = None) -> StrictClient:
    """`client` in strict mode (a StrictClient stays as it is)."""
    return client if isinstance(client, StrictClient) else StrictClient(client, rules)


def maybe_strict(client: Any, environ: Mapping[str, str] = os.environ) -> Any:
    """The hook for client factories: `client` wrapped when WORKBENCH_BIGQUERY_STRICT is on, else unchanged."""
    return wrap(client) if strict_enabled(environ) else client


def strict_problems(
    sql: str, default_project: str | None = None, rules: Mapping[str, str] | None = None
) -> Iterator[str]:
    """What strict mode would refuse in `sql` under `rules` (default: the environment's), for a check by hand."""
    yield from partition_filter_problems(sql, rules_from_environment() if rules is None else rules, default_project)
