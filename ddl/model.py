"""The data model as the DDL declares it: every table, view and table function of ddl/*.sql with its columns,
partitioning, clustering and options, read with sqlglot's BigQuery dialect.

The DDL text is the one source of truth for what bqemulator does not keep (partitioning, clustering and table
options are not in its metadata): the data-model tests, the diagram (scripts/render_data_model.py) and the strict
BigQuery client (endpoints/bigquery_strict.py, given partition_rules() by tests/conftest.py) all read it through here.

    >>> partition_filter_columns(parse_model())
    {'user_activity': 'timestamp'}
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp

from ddl.apply import DDL_DIR, load_statements


@dataclass
class Column:
    name: str
    type: str  # BigQuery type text, e.g. STRING, ARRAY<STRUCT<...>>
    required: bool
    fields: list[Column] = field(default_factory=list)  # members of a STRUCT (or ARRAY<STRUCT>)


@dataclass
class Table:
    name: str
    kind: str  # "table", "view", "table function"
    columns: list[Column] = field(default_factory=list)
    partition: str | None = None  # e.g. DATE(order_date)
    partition_column: str | None = None  # e.g. order_date
    cluster: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # tables/views it reads (views, CTAS)


def _columns(defs: list[exp.Expression]) -> list[Column]:
    out = []
    for d in defs:
        if not isinstance(d, exp.ColumnDef):
            continue
        kind: exp.DataType = d.args["kind"]
        required = any(isinstance(c.args.get("kind"), exp.NotNullColumnConstraint) for c in d.constraints)
        struct = kind
        if kind.this == exp.DataType.Type.ARRAY and kind.expressions:
            struct = kind.expressions[0]
        members = _columns(struct.expressions) if struct.this == exp.DataType.Type.STRUCT else []
        out.append(Column(d.name, kind.sql("bigquery"), required, members))
    return out


def _option_value(value: exp.Expression) -> str:
    return value.this if isinstance(value, exp.Literal) and value.is_string else value.sql("bigquery")


def parse_model(project: str = "project", dataset: str = "dataset", ddl_dir: Path = DDL_DIR) -> dict[str, Table]:
    """Every table, view and table function the DDL creates in the dataset, by name, in DDL order."""
    model: dict[str, Table] = {}
    for statement in load_statements(project=project, dataset=dataset, ddl_dir=ddl_dir):
        tree = sqlglot.parse_one(statement.sql, read="bigquery")
        if not isinstance(tree, exp.Create) or tree.kind == "SCHEMA":
            continue
        target = tree.this.this if isinstance(tree.this, exp.Schema | exp.UserDefinedFunction) else tree.this
        name = target.name
        kind = {"VIEW": "view", "FUNCTION": "table function"}.get(tree.kind, "table")
        table = Table(name, kind)
        if isinstance(tree.this, exp.Schema):
            table.columns = _columns(tree.this.expressions)
        for prop in tree.args.get("properties").expressions if tree.args.get("properties") else []:
            if isinstance(prop, exp.PartitionedByProperty):
                table.partition = prop.this.sql("bigquery")
                column = prop.this.find(exp.Column)
                table.partition_column = column.name if column else None
            elif isinstance(prop, exp.ClusterProperty):
                table.cluster = [e.sql("bigquery") for e in prop.expressions]
            elif isinstance(prop, exp.Property) and prop.args.get("value") is not None:
                table.options[prop.name] = _option_value(prop.args["value"])
        query = tree.expression
        if query is not None:
            ctes = {cte.alias for cte in query.find_all(exp.CTE)}
            seen = []
            for ref in query.find_all(exp.Table):
                # A table function call parses as Table(Anonymous(`project.dataset.fn`)): take the last part.
                ref_name = ref.this.name.split(".")[-1] if isinstance(ref.this, exp.Anonymous) else ref.name
                if ref_name and ref_name not in ctes and ref_name not in seen and ref_name != name:
                    seen.append(ref_name)
            table.sources = seen
        model[name] = table
    return model


def partition_filter_columns(model: dict[str, Table]) -> dict[str, str]:
    """{table: partitioning column} of every table whose options say require_partition_filter = TRUE."""
    return {
        name: table.partition_column
        for name, table in model.items()
        if table.partition_column and table.options.get("require_partition_filter", "").upper() == "TRUE"
    }


@functools.cache
def partition_rules() -> dict[str, str]:
    """The packaged DDL's partition_filter_columns: the rules strict BigQuery mode holds reads to
    (endpoints.bigquery_strict, through wrap(rules=...) or WORKBENCH_BIGQUERY_STRICT_RULES)."""
    return partition_filter_columns(parse_model())
