"""Read: Pub/Sub messages, with attributes, message id and publish time, from the pipeline's subscription."""

from __future__ import annotations

import apache_beam as beam


class ReadEvents(beam.PTransform):
    """Pub/Sub messages (with attributes, message id and publish time) from a named subscription.

    The named subscription, never `topic=`: a topic read creates a temporary subscription and misses what was
    published before the pipeline started.
    """

    def __init__(self, subscription: str) -> None:
        super().__init__()
        self.subscription = subscription

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        # Read messages are counted by the next step (ParseEventFn): a counting step of its own would add the
        # DirectRunner's per-element, per-step bookkeeping for nothing.
        return pbegin | "ReadFromPubSub" >> beam.io.ReadFromPubSub(subscription=self.subscription, with_attributes=True)
