"""Names the pipeline's modules share: the dead-letter output tag and the sinks' retry default.

Here, not in the module that uses them most, so that options.py and the stages never import each other for them.
"""

from __future__ import annotations

DEAD_LETTER = "dead_letter"  # the tag of every dead-letter output

DEFAULT_RETRY_SECONDS = 300.0  # how long a sink may stay down before what it could not write is dead-lettered
