-- S3 history backfill, step 2 of 2: move landed history into the live tables, deduplicated, then empty the
-- landing tables. One script (run it whole: `bq query --use_legacy_sql=false "$(workbench bq render history_merge
-- --project ${project} --dataset ${dataset})"`); safe to re-run, from the start, after a failure at any step.
--
-- Historical events carry no Pub/Sub metadata, and an event may exist both in S3 and in the stream (the
-- export and the stream overlap at their boundary), so deduplication is on each event's natural key, not on
-- event_id: order (order_id, status, order_date), inventory (inventory_id), user activity (user_id,
-- session_id, activity_type, timestamp). Only events whose key is not in the live table yet are inserted;
-- duplicates inside the history itself collapse to one. A history row gets a deterministic event_id (the
-- SHA-256 of its key, 64 hex digits: it cannot collide with a UUID or a Pub/Sub message id) so reruns and
-- views see one stable id; message_id and publish_time stay NULL, and run_id names the backfill.
--
-- Incomplete rows go to the dead letters, not into the MERGE. The landing columns are all NULLABLE (the
-- landing tables are CTAS copies, and history_load.sql loads them NULLABLE), while the live tables require
-- every event field: one NULL in a required column would fail a whole MERGE, and a NULL key never equals
-- itself, so such a row would be inserted again by every rerun. Step 1 writes each row with a NULL in any
-- field eventmodel.schema requires to dead_letters (reason NULL_FIELD, stage backfill, the row's JSON as the
-- payload, the NULL fields named in detail); step 2 merges only complete rows. The list of fields is written
-- out twice per type below; tests/ddl/test_ddl_text.py checks both against eventmodel.schema. (The members of
-- an items line are not checked: the live columns inside STRUCTs are NULLABLE, so they cannot fail the MERGE;
-- validate old data with the batch pipeline, docs/data-model.md, when lines may be incomplete.) COALESCE keeps
-- an empty list "" on bqemulator too, whose ARRAY_TO_STRING of only NULLs is NULL. A dead letter's
-- event_id is the SHA-256 of the landed row's JSON, and step 1 skips rows whose dead letter exists already,
-- so a rerun adds none twice.
--
-- Split by year: one job modifies at most 4,000 partitions (https://cloud.google.com/bigquery/quotas,
-- "Number of partitions modified by a single job: 4,000 partitions ... BigQuery rejects any query or load job
-- that attempts to modify more than 4,000 partitions"), and the live tables have one partition a day, so a
-- single MERGE of more than ~11 years of history would be rejected. Step 2 loops over the landed years; each
-- statement in the loop is its own child job and touches at most 366 partitions.
-- Cost: each MERGE bounds the live table to one year with constants (the loop variable), so BigQuery can prune
-- the live table's partitions to that year (confirm: docs/data-model.md, "Confirm on a real project").
-- The key is hashed as TO_JSON_STRING(STRUCT(...)) in the USING subquery: bqemulator cannot run a MERGE whose
-- source uses CONCAT (or ||), and the JSON form is unambiguous where "a|b" joins are not.
-- Streaming limits do not bite here: the MERGEs only insert (they modify no streamed row, which DML may not
-- do for 30 minutes after the row was streamed), and the landing tables are written by load jobs, not streamed.
DECLARE backfill_run STRING DEFAULT CONCAT("s3-backfill-", FORMAT_TIMESTAMP("%Y%m%dT%H%M%S", CURRENT_TIMESTAMP()));

-- Step 1: rows with a NULL in a required field become dead letters.
INSERT INTO `${project}.${dataset}.dead_letters`
  (payload, reason, detail, stage, event_type, attributes,
   event_id, message_id, publish_time, ingest_time, run_id, schema_version)
SELECT
  CAST(TO_JSON_STRING(incomplete.landed_row) AS BYTES), "NULL_FIELD",
  CONCAT("history row with NULL required field(s): ", incomplete.missing_fields), "backfill", "order", NULL,
  TO_HEX(SHA256(TO_JSON_STRING(incomplete.landed_row))), NULL, NULL, CURRENT_TIMESTAMP(), backfill_run, "${schema_version}"
FROM (
  SELECT
    history AS landed_row,
    COALESCE(ARRAY_TO_STRING([
      IF(event_type IS NULL, 'event_type', NULL),
      IF(order_id IS NULL, 'order_id', NULL),
      IF(customer_id IS NULL, 'customer_id', NULL),
      IF(order_date IS NULL, 'order_date', NULL),
      IF(status IS NULL, 'status', NULL),
      IF(shipping_address IS NULL, 'shipping_address', NULL),
      IF(shipping_address.street IS NULL, 'shipping_address.street', NULL),
      IF(shipping_address.city IS NULL, 'shipping_address.city', NULL),
      IF(shipping_address.country IS NULL, 'shipping_address.country', NULL),
      IF(total_amount IS NULL, 'total_amount', NULL)
    ], ', '), "") AS missing_fields
  FROM `${project}.${dataset}.history_orders` AS history
) AS incomplete
WHERE incomplete.missing_fields != ""
  AND NOT EXISTS (
    SELECT 1 FROM `${project}.${dataset}.dead_letters` AS letter
    WHERE letter.ingest_time >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)  -- the table keeps 30 days
      AND letter.event_id = TO_HEX(SHA256(TO_JSON_STRING(incomplete.landed_row)))
  );

INSERT INTO `${project}.${dataset}.dead_letters`
  (payload, reason, detail, stage, event_type, attributes,
   event_id, message_id, publish_time, ingest_time, run_id, schema_version)
SELECT
  CAST(TO_JSON_STRING(incomplete.landed_row) AS BYTES), "NULL_FIELD",
  CONCAT("history row with NULL required field(s): ", incomplete.missing_fields), "backfill", "inventory", NULL,
  TO_HEX(SHA256(TO_JSON_STRING(incomplete.landed_row))), NULL, NULL, CURRENT_TIMESTAMP(), backfill_run, "${schema_version}"
FROM (
  SELECT
    history AS landed_row,
    COALESCE(ARRAY_TO_STRING([
      IF(event_type IS NULL, 'event_type', NULL),
      IF(inventory_id IS NULL, 'inventory_id', NULL),
      IF(product_id IS NULL, 'product_id', NULL),
      IF(warehouse_id IS NULL, 'warehouse_id', NULL),
      IF(quantity_change IS NULL, 'quantity_change', NULL),
      IF(reason IS NULL, 'reason', NULL),
      IF(timestamp IS NULL, 'timestamp', NULL)
    ], ', '), "") AS missing_fields
  FROM `${project}.${dataset}.history_inventory` AS history
) AS incomplete
WHERE incomplete.missing_fields != ""
  AND NOT EXISTS (
    SELECT 1 FROM `${project}.${dataset}.dead_letters` AS letter
    WHERE letter.ingest_time >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)  -- the table keeps 30 days
      AND letter.event_id = TO_HEX(SHA256(TO_JSON_STRING(incomplete.landed_row)))
  );

INSERT INTO `${project}.${dataset}.dead_letters`
  (payload, reason, detail, stage, event_type, attributes,
   event_id, message_id, publish_time, ingest_time, run_id, schema_version)
SELECT
  CAST(TO_JSON_STRING(incomplete.landed_row) AS BYTES), "NULL_FIELD",
  CONCAT("history row with NULL required field(s): ", incomplete.missing_fields), "backfill", "user_activity", NULL,
  TO_HEX(SHA256(TO_JSON_STRING(incomplete.landed_row))), NULL, NULL, CURRENT_TIMESTAMP(), backfill_run, "${schema_version}"
FROM (
  SELECT
    history AS landed_row,
    COALESCE(ARRAY_TO_STRING([
      IF(event_type IS NULL, 'event_type', NULL),
      IF(user_id IS NULL, 'user_id', NULL),
      IF(activity_type IS NULL, 'activity_type', NULL),
      IF(ip_address IS NULL, 'ip_address', NULL),
      IF(user_agent IS NULL, 'user_agent', NULL),
      IF(timestamp IS NULL, 'timestamp', NULL),
      IF(metadata IS NULL, 'metadata', NULL),
      IF(metadata.session_id IS NULL, 'metadata.session_id', NULL),
      IF(metadata.platform IS NULL, 'metadata.platform', NULL)
    ], ', '), "") AS missing_fields
  FROM `${project}.${dataset}.history_user_activity` AS history
) AS incomplete
WHERE incomplete.missing_fields != ""
  AND NOT EXISTS (
    SELECT 1 FROM `${project}.${dataset}.dead_letters` AS letter
    WHERE letter.ingest_time >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)  -- the table keeps 30 days
      AND letter.event_id = TO_HEX(SHA256(TO_JSON_STRING(incomplete.landed_row)))
  );

-- Step 2: complete rows, merged one year at a time (at most 366 daily partitions per MERGE).
FOR year IN (
  SELECT DISTINCT EXTRACT(YEAR FROM order_date) AS value FROM `${project}.${dataset}.history_orders`
  UNION DISTINCT
  SELECT DISTINCT EXTRACT(YEAR FROM timestamp) FROM `${project}.${dataset}.history_inventory`
  UNION DISTINCT
  SELECT DISTINCT EXTRACT(YEAR FROM timestamp) FROM `${project}.${dataset}.history_user_activity`
)
DO
  MERGE `${project}.${dataset}.orders` AS live
  USING (
    SELECT *, TO_HEX(SHA256(TO_JSON_STRING(STRUCT(order_id, status, order_date)))) AS landed_event_id
    FROM (
      SELECT
        *,
        COALESCE(ARRAY_TO_STRING([
          IF(event_type IS NULL, 'event_type', NULL),
          IF(order_id IS NULL, 'order_id', NULL),
          IF(customer_id IS NULL, 'customer_id', NULL),
          IF(order_date IS NULL, 'order_date', NULL),
          IF(status IS NULL, 'status', NULL),
          IF(shipping_address IS NULL, 'shipping_address', NULL),
          IF(shipping_address.street IS NULL, 'shipping_address.street', NULL),
          IF(shipping_address.city IS NULL, 'shipping_address.city', NULL),
          IF(shipping_address.country IS NULL, 'shipping_address.country', NULL),
          IF(total_amount IS NULL, 'total_amount', NULL)
        ], ', '), "") AS missing_fields
      FROM `${project}.${dataset}.history_orders`
      WHERE order_date >= TIMESTAMP(DATE(year.value, 1, 1)) AND order_date < TIMESTAMP(DATE(year.value + 1, 1, 1))
    )
    WHERE missing_fields = ""
    QUALIFY ROW_NUMBER() OVER (PARTITION BY order_id, status, order_date ORDER BY customer_id) = 1
  ) AS landed
  ON live.order_date >= TIMESTAMP(DATE(year.value, 1, 1)) AND live.order_date < TIMESTAMP(DATE(year.value + 1, 1, 1))
    AND live.order_id = landed.order_id
    AND live.status = landed.status
    AND live.order_date = landed.order_date
  WHEN NOT MATCHED THEN
    INSERT (event_type, order_id, customer_id, order_date, status, items, shipping_address, total_amount,
            event_id, message_id, publish_time, ingest_time, run_id, schema_version)
    VALUES (landed.event_type, landed.order_id, landed.customer_id, landed.order_date, landed.status,
          landed.items, landed.shipping_address, landed.total_amount,
            landed.landed_event_id,
            NULL, NULL, CURRENT_TIMESTAMP(), backfill_run, "${schema_version}");

  MERGE `${project}.${dataset}.inventory` AS live
  USING (
    SELECT *, TO_HEX(SHA256(TO_JSON_STRING(STRUCT(inventory_id)))) AS landed_event_id
    FROM (
      SELECT
        *,
        COALESCE(ARRAY_TO_STRING([
          IF(event_type IS NULL, 'event_type', NULL),
          IF(inventory_id IS NULL, 'inventory_id', NULL),
          IF(product_id IS NULL, 'product_id', NULL),
          IF(warehouse_id IS NULL, 'warehouse_id', NULL),
          IF(quantity_change IS NULL, 'quantity_change', NULL),
          IF(reason IS NULL, 'reason', NULL),
          IF(timestamp IS NULL, 'timestamp', NULL)
        ], ', '), "") AS missing_fields
      FROM `${project}.${dataset}.history_inventory`
      WHERE timestamp >= TIMESTAMP(DATE(year.value, 1, 1)) AND timestamp < TIMESTAMP(DATE(year.value + 1, 1, 1))
    )
    WHERE missing_fields = ""
    QUALIFY ROW_NUMBER() OVER (PARTITION BY inventory_id ORDER BY timestamp) = 1
  ) AS landed
  ON live.timestamp >= TIMESTAMP(DATE(year.value, 1, 1)) AND live.timestamp < TIMESTAMP(DATE(year.value + 1, 1, 1))
    AND live.inventory_id = landed.inventory_id
  WHEN NOT MATCHED THEN
    INSERT (event_type, inventory_id, product_id, warehouse_id, quantity_change, reason, timestamp,
            event_id, message_id, publish_time, ingest_time, run_id, schema_version)
    VALUES (landed.event_type, landed.inventory_id, landed.product_id, landed.warehouse_id,
          landed.quantity_change, landed.reason, landed.timestamp,
            landed.landed_event_id,
            NULL, NULL, CURRENT_TIMESTAMP(), backfill_run, "${schema_version}");

  MERGE `${project}.${dataset}.user_activity` AS live
  USING (
    SELECT *, TO_HEX(SHA256(TO_JSON_STRING(STRUCT(user_id, metadata.session_id, activity_type, timestamp)))) AS landed_event_id
    FROM (
      SELECT
        *,
        COALESCE(ARRAY_TO_STRING([
          IF(event_type IS NULL, 'event_type', NULL),
          IF(user_id IS NULL, 'user_id', NULL),
          IF(activity_type IS NULL, 'activity_type', NULL),
          IF(ip_address IS NULL, 'ip_address', NULL),
          IF(user_agent IS NULL, 'user_agent', NULL),
          IF(timestamp IS NULL, 'timestamp', NULL),
          IF(metadata IS NULL, 'metadata', NULL),
          IF(metadata.session_id IS NULL, 'metadata.session_id', NULL),
          IF(metadata.platform IS NULL, 'metadata.platform', NULL)
        ], ', '), "") AS missing_fields
      FROM `${project}.${dataset}.history_user_activity`
      WHERE timestamp >= TIMESTAMP(DATE(year.value, 1, 1)) AND timestamp < TIMESTAMP(DATE(year.value + 1, 1, 1))
    )
    WHERE missing_fields = ""
    QUALIFY ROW_NUMBER() OVER (PARTITION BY user_id, metadata.session_id, activity_type, timestamp ORDER BY ip_address) = 1
  ) AS landed
  ON live.timestamp >= TIMESTAMP(DATE(year.value, 1, 1)) AND live.timestamp < TIMESTAMP(DATE(year.value + 1, 1, 1))
    AND live.user_id = landed.user_id
    AND live.metadata.session_id = landed.metadata.session_id
    AND live.activity_type = landed.activity_type
    AND live.timestamp = landed.timestamp
  WHEN NOT MATCHED THEN
    INSERT (event_type, user_id, activity_type, ip_address, user_agent, timestamp, metadata,
            event_id, message_id, publish_time, ingest_time, run_id, schema_version)
    VALUES (landed.event_type, landed.user_id, landed.activity_type, landed.ip_address, landed.user_agent,
          landed.timestamp, landed.metadata,
            landed.landed_event_id,
            NULL, NULL, CURRENT_TIMESTAMP(), backfill_run, "${schema_version}");

END FOR;

TRUNCATE TABLE `${project}.${dataset}.history_orders`;
TRUNCATE TABLE `${project}.${dataset}.history_inventory`;
TRUNCATE TABLE `${project}.${dataset}.history_user_activity`;
