-- User activity: one row per click-stream event. By far the largest table (tens of events per session), and the
-- one analysts scan ad hoc, so it is the table where require_partition_filter pays: a query without a date
-- range fails instead of silently scanning the whole history.
--
-- Partitioned by day of the activity's timestamp. Clustered by activity_type, then user_id: conversion queries
-- count view_product / add_to_cart rows (the first key prunes the rest). A filter on user_id alone (a per-user
-- lookup, GDPR erasure) is not pruned by clustering, user_id being the second key; and a DELETE cannot touch
-- rows streamed in the last 30 minutes (https://cloud.google.com/bigquery/docs/data-manipulation-language,
-- Limitations), so erasure leaves them out and runs again later (docs/data-model.md).
-- metadata.session_id cannot be a cluster key (BigQuery clusters on top-level columns only); sessions are
-- built per date range by user_sessions_between (30_views.sql), which prunes on the partition column.
CREATE TABLE IF NOT EXISTS `${project}.${dataset}.user_activity` (
  event_type STRING NOT NULL,
  user_id STRING NOT NULL,
  activity_type STRING NOT NULL,
  ip_address STRING NOT NULL OPTIONS (description = "IPv4 or IPv6 text form; personal data, see docs/data-model.md"),
  user_agent STRING NOT NULL,
  timestamp TIMESTAMP NOT NULL OPTIONS (description = "when the activity happened; the partitioning column"),
  metadata STRUCT<session_id STRING, platform STRING> NOT NULL,
  event_id STRING NOT NULL OPTIONS (description = "user activity has no natural id: this is what makes each event traceable"),
  message_id STRING,
  publish_time TIMESTAMP,
  ingest_time TIMESTAMP NOT NULL,
  run_id STRING,
  schema_version STRING NOT NULL
)
PARTITION BY DATE(timestamp)
CLUSTER BY activity_type, user_id
OPTIONS (
  require_partition_filter = TRUE,
  description = "One row per user activity event; sessions via user_sessions / user_sessions_between"
);
