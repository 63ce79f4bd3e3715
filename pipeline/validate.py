"""Parse and validate: each message becomes a ValidEvent, or a dead letter with the validator's reason code
and the original bytes (eventmodel.validate decides; attributes are hints only).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.utils.timestamp import Timestamp

from eventmodel import reasons as R
from eventmodel.validate import Accepted, validate
from pipeline import core
from pipeline import metrics as M
from pipeline.constants import DEAD_LETTER
from pipeline.core import DeadLetter, ValidEvent


def _publish_time(message: PubsubMessage) -> datetime | None:
    moment = getattr(message, "publish_time", None)
    if moment is None:
        return None
    if isinstance(moment, datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if isinstance(moment, Timestamp):
        return moment.to_utc_datetime(has_tz=True)
    return None


class ParseEventFn(beam.DoFn):
    """PubsubMessage -> ValidEvent, or a DeadLetter with the validator's reason code and the original bytes."""

    def setup(self) -> None:
        self._valid = M.CounterFamily(M.valid)
        self._read = M.counter(M.READ)

    def process(self, message: PubsubMessage) -> Iterator[Any]:
        self._read.inc()
        data = message.data if message.data is not None else b""
        attributes = dict(message.attributes or {})
        message_id = message.message_id or ""
        publish_time = _publish_time(message)
        event_id = core.event_id_of(attributes, message_id)
        try:
            verdict = validate(data)
            if isinstance(verdict, Accepted):
                self._valid.inc(verdict.event_type)
                yield ValidEvent(
                    verdict.event_type,
                    verdict.event,
                    verdict.event_time,
                    event_id,
                    message_id,
                    publish_time,
                    attributes,
                    data,
                )
                return
            reason, detail = verdict.reason, verdict.detail
        except Exception as exc:  # validate() never raises; anything else here is a poison message
            reason, detail = R.PROCESSING_ERROR, f"parse stage failed: {core.describe_exception(exc)}"
        yield pvalue.TaggedOutput(
            DEAD_LETTER,
            DeadLetter(
                bytes(data), attributes, reason, detail, core.STAGE_VALIDATE, message_id, event_id, publish_time
            ),
        )


class ParseAndValidate(beam.PTransform):
    """Messages -> (valid events, dead letters). The validator decides; attributes are hints only."""

    def expand(self, messages: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        results = messages | "Validate" >> beam.ParDo(ParseEventFn()).with_outputs(DEAD_LETTER, main="valid")
        return results.valid, results[DEAD_LETTER]
