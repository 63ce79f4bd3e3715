"""The declared schemas are the assessment's, and the reason-code doc is generated from the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from eventmodel.reasons import markdown_table
from eventmodel.schema import SCHEMAS, Field

ROOT = Path(__file__).resolve().parents[2]
# The assessment's schemas, kept in the repository (the assessment itself is not): see its "source" entry.
ASSESSMENT_SCHEMAS = Path(__file__).with_name("assessment_schemas.json")

# The assessment writes types as prose inside its JSON examples; this is how each reads in our kinds.
ASSESSMENT_KINDS = {
    "uuid": "uuid",
    "timestamp": "timestamp",
    "string": "string",
    "integer": "integer",
    "float": "number",
}


def _assessment_schemas() -> dict[str, dict]:
    schemas = json.loads(ASSESSMENT_SCHEMAS.read_text())["schemas"]
    return {s["event_type"]: s for s in schemas}


def _compare(declared: tuple[Field, ...], expected: dict, path: str = "") -> None:
    assert [f.name for f in declared] == list(expected), f"field order/names differ at {path or 'top level'}"
    for field in declared:
        spec = expected[field.name]
        where = f"{path}{field.name}"
        if field.name == "event_type" and not path:
            assert field.values == (spec,), where
        elif isinstance(spec, list):
            assert field.kind == "records", where
            _compare(field.fields, spec[0], where + ".")
        elif isinstance(spec, dict):
            assert field.kind == "record", where
            _compare(field.fields, spec, where + ".")
        elif spec.startswith("enum("):
            assert field.kind == "enum", where
            assert field.values == tuple(v.strip() for v in spec[5:-1].split(",")), where
        elif spec.startswith("integer("):
            low, high = (int(x) for x in re.findall(r"-?\d+", spec))
            assert (field.kind, field.minimum, field.maximum) == ("integer", low, high), where
        elif field.kind == "ip_address":
            assert spec == "string", where  # stricter than the assessment: the text must be an IP address
        else:
            assert field.kind == ASSESSMENT_KINDS[spec], where


def test_declared_schemas_match_the_assessment():
    expected = _assessment_schemas()
    assert set(expected) == set(SCHEMAS)
    for event_type, fields in SCHEMAS.items():
        _compare(fields, expected[event_type])


def test_reason_code_doc_is_generated_from_the_code():
    doc = ROOT / "docs" / "reason-codes.md"
    assert doc.read_text() == markdown_table(), "run scripts/render_reason_codes.py"
