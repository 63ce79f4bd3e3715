"""Names the pipeline's modules share: the dead-letter output tag, the BigQuery write methods, the retry default.

Here, not in the module that uses them most, so that options.py and the stages never import each other for them.
"""

from __future__ import annotations

DEAD_LETTER = "dead_letter"  # the tag of every dead-letter output

STREAMING_INSERTS = "STREAMING_INSERTS"
STORAGE_WRITE_API = "STORAGE_WRITE_API"
METHODS = (STREAMING_INSERTS, STORAGE_WRITE_API)

DEFAULT_RETRY_SECONDS = 300.0  # how long a sink may stay down before what it could not write is dead-lettered
