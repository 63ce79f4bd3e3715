-- S3 history backfill, step 1 of 2: land the historical JSON in the history_* tables (ddl/20_history_landing.sql).
-- Not applied by `workbench bq apply`: this is a run-book script, run once per backfill.
--
-- Route chosen: Storage Transfer Service copies s3://<bucket>/<prefix>/ to ${history_uri} (a gs:// folder with
-- order/, inventory/ and user_activity/ beneath it), then LOAD DATA reads it. Transfer is one managed job with
-- checksums, retries and incremental re-runs; the copy in GCS makes reloads free of S3 egress.
--   gcloud transfer jobs create s3://<bucket>/<prefix>/ ${history_uri}/ --source-creds-file=aws-creds.json
-- Alternatives: BigQuery Omni (LOAD DATA ... WITH CONNECTION from s3:// into a dataset in aws-us-east-1, then a
-- cross-region copy) saves the GCS copy but ties the dataset to an AWS region; the BigQuery Data Transfer
-- Service for S3 loads straight into a table but cannot deduplicate against streamed rows. See docs/data-model.md.
--
-- The files are JSON lines in the assessment's wire format. Each load names its columns and their types: without
-- a column list LOAD DATA OVERWRITE would auto-detect a schema and replace the landing table's with it (decimals
-- detected as FLOAT64, which does not convert to the live tables' NUMERIC in the MERGE; an unknown field becoming
-- a column instead of failing the load). The lists are the live tables' event columns (ddl/1*.sql, a test holds
-- them equal), all NULLABLE as the landing tables are, so that a row missing a field still lands and the MERGE
-- dead-letters it; a field the list lacks fails the load (ignore_unknown_values = FALSE).
LOAD DATA OVERWRITE `${project}.${dataset}.history_orders` (
  event_type STRING,
  order_id STRING,
  customer_id STRING,
  order_date TIMESTAMP,
  status STRING,
  items ARRAY<STRUCT<product_id STRING, product_name STRING, quantity INT64, price NUMERIC>>,
  shipping_address STRUCT<street STRING, city STRING, country STRING>,
  total_amount NUMERIC
)
FROM FILES (format = "NEWLINE_DELIMITED_JSON", uris = ["${history_uri}/order/*"], ignore_unknown_values = FALSE);

LOAD DATA OVERWRITE `${project}.${dataset}.history_inventory` (
  event_type STRING,
  inventory_id STRING,
  product_id STRING,
  warehouse_id STRING,
  quantity_change INT64,
  reason STRING,
  timestamp TIMESTAMP
)
FROM FILES (format = "NEWLINE_DELIMITED_JSON", uris = ["${history_uri}/inventory/*"], ignore_unknown_values = FALSE);

LOAD DATA OVERWRITE `${project}.${dataset}.history_user_activity` (
  event_type STRING,
  user_id STRING,
  activity_type STRING,
  ip_address STRING,
  user_agent STRING,
  timestamp TIMESTAMP,
  metadata STRUCT<session_id STRING, platform STRING>
)
FROM FILES (format = "NEWLINE_DELIMITED_JSON", uris = ["${history_uri}/user_activity/*"], ignore_unknown_values = FALSE);
