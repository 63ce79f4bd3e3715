-- Orders: one row per order event. Every status change is a new event with the same order_id, so this table is
-- the order's full status history; orders_current and order_status_history (30_views.sql) derive state from it.
--
-- Partitioned by day of order_date (the event's own time: when the status was reached), so a late or replayed
-- event lands in the partition of the day it describes and daily reports prune to the days they ask about.
-- Clustered by status, then order_id: revenue and funnel queries filter on status (4 values, so the first
-- cluster key splits each partition into 4 runs), and within a status the rows are sorted by order_id. A lookup
-- by order_id alone is not pruned by clustering (only a filter on the leading cluster column is: the clustered
-- tables page, https://cloud.google.com/bigquery/docs/clustered-tables); with its status it is.
-- require_partition_filter is off on purpose: an order's current state needs all of its events, whichever
-- day they fell on; orders_current is the supported way in, and at scale it becomes a table kept by a
-- scheduled MERGE (see docs/data-model.md).
CREATE TABLE IF NOT EXISTS `${project}.${dataset}.orders` (
  event_type STRING NOT NULL OPTIONS (description = "always 'order'; kept so a row maps 1:1 to the event JSON (and S3 history loads as is)"),
  order_id STRING NOT NULL,
  customer_id STRING NOT NULL,
  order_date TIMESTAMP NOT NULL OPTIONS (description = "when this status was reached; the partitioning column"),
  status STRING NOT NULL,
  items ARRAY<STRUCT<product_id STRING, product_name STRING, quantity INT64, price NUMERIC>>,
  shipping_address STRUCT<street STRING, city STRING, country STRING> NOT NULL,
  total_amount NUMERIC NOT NULL OPTIONS (description = "money is NUMERIC: exact decimal sums, no float drift"),
  -- Ingestion metadata (column names: eventmodel/rows.py METADATA_COLUMNS).
  event_id STRING NOT NULL OPTIONS (description = "the event_id attribute, else the Pub/Sub message_id; history rows: a hash of the natural key"),
  message_id STRING OPTIONS (description = "Pub/Sub message id; NULL for rows loaded from S3 history"),
  publish_time TIMESTAMP OPTIONS (description = "Pub/Sub publish time; NULL for rows loaded from S3 history"),
  ingest_time TIMESTAMP NOT NULL OPTIONS (description = "when the pipeline (or the backfill) built the row"),
  run_id STRING OPTIONS (description = "the publisher's run_id attribute, or the backfill run"),
  schema_version STRING NOT NULL OPTIONS (description = "eventmodel.SCHEMA_VERSION the row was validated against")
)
PARTITION BY DATE(order_date)
CLUSTER BY status, order_id
OPTIONS (
  require_partition_filter = FALSE,
  description = "One row per order event (status change); dedup by event_id through orders_deduped"
);
