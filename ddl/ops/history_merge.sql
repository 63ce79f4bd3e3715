-- S3 history backfill, step 2 of 2: move landed history into the live tables, deduplicated, then empty the
-- landing tables. One script (run it whole: the DECLAREd ranges are shared); safe to re-run.
--
-- Historical events carry no Pub/Sub metadata, and an event may exist both in S3 and in the stream (the
-- export and the stream overlap at their boundary), so deduplication is on each event's natural key, not on
-- event_id: order (order_id, status, order_date), inventory (inventory_id), user activity (user_id,
-- session_id, activity_type, timestamp). Only events whose key is not in the live table yet are inserted;
-- duplicates inside the history itself collapse to one. A history row gets a deterministic event_id (the
-- SHA-256 of its key, 64 hex digits: it cannot collide with a UUID or a Pub/Sub message id) so reruns and
-- views see one stable id; message_id and publish_time stay NULL, and run_id names the backfill.
--
-- The key is hashed as TO_JSON_STRING(STRUCT(...)) in the USING subquery: bqemulator cannot run a MERGE whose
-- source uses CONCAT (or ||), and the JSON form is unambiguous where "a|b" joins are not.
-- Cost: each MERGE restricts the live table to the landed history's time range with constants (script
-- variables), so BigQuery prunes the live table's partitions to that range instead of scanning all of it.
DECLARE backfill_run STRING DEFAULT CONCAT("s3-backfill-", FORMAT_TIMESTAMP("%Y%m%dT%H%M%S", CURRENT_TIMESTAMP()));
DECLARE orders_from TIMESTAMP DEFAULT (SELECT MIN(order_date) FROM `${project}.${dataset}.history_orders`);
DECLARE orders_to TIMESTAMP DEFAULT (SELECT MAX(order_date) FROM `${project}.${dataset}.history_orders`);
DECLARE inventory_from TIMESTAMP DEFAULT (SELECT MIN(timestamp) FROM `${project}.${dataset}.history_inventory`);
DECLARE inventory_to TIMESTAMP DEFAULT (SELECT MAX(timestamp) FROM `${project}.${dataset}.history_inventory`);
DECLARE activity_from TIMESTAMP DEFAULT (SELECT MIN(timestamp) FROM `${project}.${dataset}.history_user_activity`);
DECLARE activity_to TIMESTAMP DEFAULT (SELECT MAX(timestamp) FROM `${project}.${dataset}.history_user_activity`);

MERGE `${project}.${dataset}.orders` AS live
USING (
  SELECT
    *,
    TO_HEX(SHA256(TO_JSON_STRING(STRUCT(order_id, status, order_date)))) AS landed_event_id
  FROM `${project}.${dataset}.history_orders`
  WHERE order_id IS NOT NULL AND status IS NOT NULL AND order_date IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY order_id, status, order_date ORDER BY customer_id) = 1
) AS landed
ON live.order_date BETWEEN orders_from AND orders_to
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
  FROM `${project}.${dataset}.history_inventory`
  WHERE inventory_id IS NOT NULL AND timestamp IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY inventory_id ORDER BY timestamp) = 1
) AS landed
ON live.timestamp BETWEEN inventory_from AND inventory_to
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
  SELECT
    *,
    TO_HEX(SHA256(TO_JSON_STRING(STRUCT(user_id, metadata.session_id, activity_type, timestamp)))) AS landed_event_id
  FROM `${project}.${dataset}.history_user_activity`
  WHERE user_id IS NOT NULL AND activity_type IS NOT NULL AND timestamp IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY user_id, metadata.session_id, activity_type, timestamp ORDER BY ip_address
  ) = 1
) AS landed
ON live.timestamp BETWEEN activity_from AND activity_to
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

TRUNCATE TABLE `${project}.${dataset}.history_orders`;
TRUNCATE TABLE `${project}.${dataset}.history_inventory`;
TRUNCATE TABLE `${project}.${dataset}.history_user_activity`;
