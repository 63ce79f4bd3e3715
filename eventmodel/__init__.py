"""The event model: the one source of truth for event schemas, reason codes and resource names.

Pure Python (orjson only): the generator, the Beam pipeline on Dataflow workers, the DDL checks and
reconcile all import it, so it must stay free of Beam, Faker, rich and the CLI.
"""

from eventmodel.reasons import REASONS, Reason
from eventmodel.schema import EVENT_TYPES, SCHEMA_VERSION, SCHEMAS, Field
from eventmodel.validate import Accepted, Rejected, validate

__all__ = [
    "EVENT_TYPES",
    "REASONS",
    "SCHEMAS",
    "SCHEMA_VERSION",
    "Accepted",
    "Field",
    "Reason",
    "Rejected",
    "validate",
]
