"""The canonical form of an accepted event: what "the sink holds the event unchanged" means, decided once.

A sink never holds the bytes a producer sent: the GCS line re-encodes the event, BigQuery stores typed columns
(TIMESTAMP, NUMERIC, STRUCT, ARRAY<STRUCT>; see eventmodel.rows). Two copies are the same event when their
canonical texts are equal, and the canonical text is built from the schema (eventmodel.schema), field by field
in schema order, through the documented type mapping:

    string, uuid, enum, ip_address   the text itself
    integer                          decimal digits (INT64)
    number                           integer count of 1e-9 units (NUMERIC has 9 decimal places, so exact)
    timestamp                        microseconds since the Unix epoch, UTC (BigQuery TIMESTAMP precision)
    record                           its fields, flattened in order
    records                          each element's fields, elements in order, joined by RECORD_SEPARATOR
    missing / null                   NULL_MARK

Fields are joined by FIELD_SEPARATOR; the digest is the MD5 hex of the UTF-8 text, because MD5 is the hash
both reconcile engines compute natively (BigQuery TO_HEX(MD5(...)), DuckDB md5(...)).

The same form has two implementations that tests hold equal on both engines:
- canonical_digest(event_type, event): Python, from the event JSON (the publisher records it in the manifest);
- canonical_sql(event_type): a BigQuery Standard SQL expression over a row of the event's table (the schema
  eventmodel.rows builds), which reconcile runs inside BigQuery and, transpiled by sqlglot, inside DuckDB.

    >>> canonical_text("inventory", {"event_type": "inventory", "inventory_id": "i", "product_id": "p",
    ...     "warehouse_id": "w", "quantity_change": -3, "reason": "sale", "timestamp": "1970-01-01T00:00:01Z"})
    'inventory\\x1fi\\x1fp\\x1fw\\x1f-3\\x1fsale\\x1f1000000'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from eventmodel.schema import SCHEMAS, Field
from eventmodel.validate import parse_timestamp

FIELD_SEPARATOR = "\x1f"  # ASCII unit separator: never part of a valid event's text in practice
RECORD_SEPARATOR = "\x1e"  # ASCII record separator, between the elements of a records field
NULL_MARK = "\u2400"  # SYMBOL FOR NULL: tells a missing value from an empty string
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NANO = Decimal(10) ** 9


def _timestamp_micros(value: Any) -> str | None:
    moment = parse_timestamp(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return str((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _nano_units(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        exact = value if isinstance(value, Decimal) else Decimal(repr(value))
        return str(int((exact * _NANO).to_integral_value()))
    except (InvalidOperation, ValueError):
        return None


def _value_text(field: Field, value: Any) -> list[str]:
    if field.kind == "record":
        record = value if isinstance(value, dict) else {}
        return [text for sub in field.fields for text in _value_text(sub, record.get(sub.name))]
    if field.kind == "records":
        elements = value if isinstance(value, list) else []
        return [
            RECORD_SEPARATOR.join(
                FIELD_SEPARATOR.join(text for sub in field.fields for text in _value_text(sub, (e or {}).get(sub.name)))
                for e in elements
            )
        ]
    if value is None:
        return [NULL_MARK]
    if field.kind == "timestamp":
        text = _timestamp_micros(value)
    elif field.kind == "number":
        text = _nano_units(value)
    elif field.kind == "integer":
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
    else:
        text = value if isinstance(value, str) else None
    return [NULL_MARK if text is None else text]


def canonical_text(event_type: str, event: dict[str, Any]) -> str:
    """The canonical text of an event of `event_type` (its JSON object as published, or as a sink returns it)."""
    return FIELD_SEPARATOR.join(text for f in SCHEMAS[event_type] for text in _value_text(f, event.get(f.name)))


def canonical_digest(event_type: str, event: dict[str, Any]) -> str:
    """MD5 hex of canonical_text: equal for two copies of the same event, whatever sink holds them."""
    return hashlib.md5(canonical_text(event_type, event).encode("utf-8"), usedforsecurity=False).hexdigest()


# --------------------------------------------------------------------------------------------------- SQL

_SQL_FIELD_SEPARATOR = "CHR(31)"
_SQL_RECORD_SEPARATOR = "CHR(30)"
_SQL_NULL_MARK = "CHR(9216)"


def _normalised(field: Field, column: str, value: Any) -> str:
    """The column as the comparison sees it once a sink's declared conversion (reconcile.contract.Value) is
    applied: the same on the published side and on the sink's, so that only undeclared differences remain."""
    if value is None:
        return column
    if value.truncate and field.kind == "timestamp":
        column = f"TIMESTAMP_TRUNC({column}, {value.truncate.upper()})"
    if value.tolerance and field.kind in ("number", "integer"):
        column = f"(ROUND({column} / {value.tolerance!r}) * {value.tolerance!r})"
    if value.case:
        column = f"{value.case.upper()}({column})"
    return column


def _sql_scalar(field: Field, column: str, value: Any = None) -> str:
    column = _normalised(field, column, value)
    if field.kind == "timestamp":
        text = f"CAST(UNIX_MICROS({column}) AS STRING)"
    elif field.kind == "number":
        # Through BIGNUMERIC: DuckDB (bqemulator, the local engine) keeps NUMERIC as DECIMAL(18,3), which overflows
        # at 1,000,000 x 10^9; BigQuery's NUMERIC holds it, and BIGNUMERIC changes nothing there.
        text = f"CAST(CAST(CAST({column} AS BIGNUMERIC) * 1000000000 AS INT64) AS STRING)"
    elif field.kind == "integer":
        text = (
            f"CAST(CAST({column} AS INT64) AS STRING)"
            if value is not None and value.tolerance
            else f"CAST({column} AS STRING)"
        )
    else:
        text = column
    return f"COALESCE({text}, {_SQL_NULL_MARK})"


@dataclass(frozen=True)
class Comparison:
    """What one sink keeps of an event and how (a reconcile.contract entry): declared conversions by field path,
    the fields it omits, and the records fields it keeps as a set (a child table with no position column)."""

    values: dict[str, Any] = dataclass_field(default_factory=dict)
    omit: frozenset[str] = frozenset()
    unordered: frozenset[str] = frozenset()


EXACT = Comparison()


def _sql_parts(field: Field, column: str, arrays: str, path: str = "", how: Comparison = EXACT) -> list[str]:
    path = f"{path}{field.name}"
    if path in how.omit:
        return [_SQL_NULL_MARK] * (len(_leaves(field)) if field.kind == "record" else 1)
    if field.kind == "record":
        return [part for sub in field.fields
                for part in _sql_parts(sub, f"{column}.{sub.name}", arrays, f"{path}.", how)]  # fmt: skip
    if field.kind == "records":
        element = f", {_SQL_FIELD_SEPARATOR}, ".join(
            part for sub in field.fields for part in _sql_parts(sub, f"_element.{sub.name}", arrays, f"{path}.", how)
        )
        # A set (no position kept): elements in the order of their own text, on both sides.
        order = f"CONCAT({element})" if path in how.unordered else "_position"
        if arrays == "lambda":
            mapped = f"LIST_TRANSFORM({column}, _element -> CONCAT({element}))"
            if path in how.unordered:
                mapped = f"LIST_SORT({mapped})"
            return [f"ARRAY_TO_STRING({mapped}, {_SQL_RECORD_SEPARATOR})"]
        return [
            f"ARRAY_TO_STRING(ARRAY(SELECT CONCAT({element}) FROM UNNEST({column}) AS _element "
            f"WITH OFFSET AS _position ORDER BY {order}), {_SQL_RECORD_SEPARATOR})"
        ]
    return [_sql_scalar(field, column, how.values.get(path))]


def _leaves(field: Field) -> list[Field]:
    return [leaf for sub in field.fields for leaf in (_leaves(sub) if sub.kind == "record" else [sub])]


ARRAY_STYLES = ("subquery", "lambda")


def canonical_sql(event_type: str, prefix: str = "", arrays: str = "subquery", how: Comparison = EXACT) -> str:
    """BigQuery Standard SQL for canonical_digest over a row of the event's table (columns as ddl/ names them).

    `prefix` qualifies the columns ("t." for `FROM orders AS t`). `arrays` spells the records fields: "subquery"
    is BigQuery's ARRAY(SELECT ... FROM UNNEST ... ORDER BY offset); "lambda" is LIST_TRANSFORM(col, x -> ...),
    for a statement that sqlglot transpiles to DuckDB, where it means the same and runs about 4x faster than the
    correlated subquery the BigQuery form becomes. `how`: a sink's declared conversions and omissions, applied
    alike to the published event and to the sink's copy (EXACT: the canonical digest itself).
    """
    parts = canonical_parts_sql(event_type, prefix, arrays, how)
    return f"TO_HEX(MD5(CONCAT({f', {_SQL_FIELD_SEPARATOR}, '.join(parts)})))"


def canonical_parts_sql(
    event_type: str, prefix: str = "", arrays: str = "subquery", how: Comparison = EXACT
) -> list[str]:
    """The canonical text's parts, one per leaf field in schema order (a records field is one part)."""
    if arrays not in ARRAY_STYLES:
        raise ValueError(f"arrays must be one of {ARRAY_STYLES}, got {arrays!r}")
    return [part for f in SCHEMAS[event_type] for part in _sql_parts(f, f"{prefix}{f.name}", arrays, "", how)]


def part_paths(event_type: str) -> list[str]:
    """The field path of each part of canonical_parts_sql, in the same order (for naming an altered field)."""
    found: list[str] = []

    def walk(fields: tuple[Field, ...], path: str) -> None:
        for f in fields:
            if f.kind == "record":
                walk(f.fields, f"{path}{f.name}.")
            else:
                found.append(f"{path}{f.name}")

    walk(SCHEMAS[event_type], "")
    return found


def key_sql(event_type: str, paths: tuple[str, ...], prefix: str = "", how: Comparison = EXACT) -> str:
    """BigQuery SQL: the digest of an event's natural key (`paths`, dotted), its values in canonical form with the
    sink's declared conversions: the same on the published side and on a sink row, so equal keys meet."""
    from eventmodel.schema import field_paths

    known = field_paths(event_type)
    parts = [_sql_scalar(known[p], f"{prefix}{p}", how.values.get(p)) for p in paths]
    return f"TO_HEX(MD5(CONCAT({f', {_SQL_FIELD_SEPARATOR}, '.join(parts)})))"
