-- Dead letters: every message the pipeline could not turn into a row, with its original bytes untouched, so a
-- fixed pipeline (or a person) can replay it. Reason codes: eventmodel/reasons.py (docs/reason-codes.md).
--
-- Partitioned by day of ingest_time (when it was dead-lettered): the payload's own time may be missing or
-- unparseable, and expiry should count from the failure, not from the event. Partitions expire after 30 days:
-- dead letters are for triage and replay, the dead-letter topic's subscription is the durable copy, and raw
-- payloads may hold personal data that should not live forever. Clustered by reason, event_type: triage
-- starts with "how many of each reason" and "show me the payloads of this reason".
-- No require_partition_filter: the table is small by construction and triage is ad hoc.
CREATE TABLE IF NOT EXISTS `${project}.${dataset}.dead_letters` (
  payload BYTES NOT NULL OPTIONS (description = "the message body exactly as received"),
  reason STRING NOT NULL OPTIONS (description = "stable reason code, eventmodel.reasons"),
  detail STRING OPTIONS (description = "human-readable explanation of the failure"),
  stage STRING NOT NULL OPTIONS (description = "the pipeline stage that failed (validate, bigquery, gcs, ...)"),
  event_type STRING OPTIONS (description = "the event_type attribute, a hint only: the payload may be broken"),
  attributes JSON OPTIONS (description = "all Pub/Sub attributes of the source message"),
  event_id STRING NOT NULL,
  message_id STRING OPTIONS (description = "the source message's id (the dead-letter topic copy carries it as dlq_source_message_id)"),
  publish_time TIMESTAMP,
  ingest_time TIMESTAMP NOT NULL OPTIONS (description = "when the message was dead-lettered; the partitioning column"),
  run_id STRING,
  schema_version STRING NOT NULL
)
PARTITION BY DATE(ingest_time)
CLUSTER BY reason, event_type
OPTIONS (
  partition_expiration_days = 30,
  require_partition_filter = FALSE,
  description = "Messages the pipeline rejected, with the original bytes, reason code and detail"
);
