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
-- The files are JSON lines in the assessment's wire format, so each type loads 1:1 into its landing table's
-- columns; a field the schema lacks fails the load instead of being dropped (ignore_unknown_values = false).
LOAD DATA OVERWRITE `${project}.${dataset}.history_orders`
FROM FILES (format = "NEWLINE_DELIMITED_JSON", uris = ["${history_uri}/order/*"], ignore_unknown_values = FALSE);

LOAD DATA OVERWRITE `${project}.${dataset}.history_inventory`
FROM FILES (format = "NEWLINE_DELIMITED_JSON", uris = ["${history_uri}/inventory/*"], ignore_unknown_values = FALSE);

LOAD DATA OVERWRITE `${project}.${dataset}.history_user_activity`
FROM FILES (format = "NEWLINE_DELIMITED_JSON", uris = ["${history_uri}/user_activity/*"], ignore_unknown_values = FALSE);
