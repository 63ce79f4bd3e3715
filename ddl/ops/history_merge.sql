-- S3 history backfill, step 2 of 2: move landed history into the live tables, deduplicated, then empty the
-- landing tables. One script (run it whole: the DECLAREd ranges are shared); safe to re-run.
--
-- Historical events carry no Pub/Sub metadata, and an event may exist both in S3 and in the stream (the
-- export and the stream overlap at their boundary), so deduplication is on each event's natural key, not on
-- event_id: order (order_id, status, order_date), inventory (inventory_id), user activity (user_id,
-- session_id, activity_type, timestamp). Only events whose key is not in the live table yet are inserted;
-- duplicates inside the history itself collapse to one. A history row gets a deterministic event_id (a hash
-- of its key, prefixed "s3:") so reruns and views see one stable id, message_id and publish_time stay NULL,
-- and run_id names the backfill.
--
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
  SELECT *
  FROM `${project}.${dataset}.history_orders`
  WHERE order_id IS NOT NULL AND status IS NOT NULL AND order_date IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY order_id, status, order_date ORDER BY customer_id) = 1
) AS history
ON live.order_date BETWEEN orders_from AND orders_to
  AND live.order_id = history.order_id
  AND live.status = history.status
  AND live.order_date = history.order_date
WHEN NOT MATCHED THEN
  INSERT (event_type, order_id, customer_id, order_date, status, items, shipping_address, total_amount,
          event_id, message_id, publish_time, ingest_time, run_id, schema_version)
  VALUES (history.event_type, history.order_id, history.customer_id, history.order_date, history.status,
          history.items, history.shipping_address, history.total_amount,
          CONCAT("s3:", TO_HEX(SHA256(CONCAT(history.order_id, "|", history.status, "|", CAST(history.order_date AS STRING))))),
          NULL, NULL, CURRENT_TIMESTAMP(), backfill_run, "${schema_version}");

MERGE `${project}.${dataset}.inventory` AS live
USING (
  SELECT *
  FROM `${project}.${dataset}.history_inventory`
  WHERE inventory_id IS NOT NULL AND timestamp IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY inventory_id ORDER BY timestamp) = 1
) AS history
ON live.timestamp BETWEEN inventory_from AND inventory_to
  AND live.inventory_id = history.inventory_id
WHEN NOT MATCHED THEN
  INSERT (event_type, inventory_id, product_id, warehouse_id, quantity_change, reason, timestamp,
          event_id, message_id, publish_time, ingest_time, run_id, schema_version)
  VALUES (history.event_type, history.inventory_id, history.product_id, history.warehouse_id,
          history.quantity_change, history.reason, history.timestamp,
          CONCAT("s3:", TO_HEX(SHA256(history.inventory_id))),
          NULL, NULL, CURRENT_TIMESTAMP(), backfill_run, "${schema_version}");

MERGE `${project}.${dataset}.user_activity` AS live
USING (
  SELECT *
  FROM `${project}.${dataset}.history_user_activity`
  WHERE user_id IS NOT NULL AND activity_type IS NOT NULL AND timestamp IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY user_id, metadata.session_id, activity_type, timestamp ORDER BY ip_address
  ) = 1
) AS history
ON live.timestamp BETWEEN activity_from AND activity_to
  AND live.user_id = history.user_id
  AND live.metadata.session_id = history.metadata.session_id
  AND live.activity_type = history.activity_type
  AND live.timestamp = history.timestamp
WHEN NOT MATCHED THEN
  INSERT (event_type, user_id, activity_type, ip_address, user_agent, timestamp, metadata,
          event_id, message_id, publish_time, ingest_time, run_id, schema_version)
  VALUES (history.event_type, history.user_id, history.activity_type, history.ip_address, history.user_agent,
          history.timestamp, history.metadata,
          CONCAT("s3:", TO_HEX(SHA256(CONCAT(history.user_id, "|", history.metadata.session_id, "|",
                                             history.activity_type, "|", CAST(history.timestamp AS STRING))))),
          NULL, NULL, CURRENT_TIMESTAMP(), backfill_run, "${schema_version}");

TRUNCATE TABLE `${project}.${dataset}.history_orders`;
TRUNCATE TABLE `${project}.${dataset}.history_inventory`;
TRUNCATE TABLE `${project}.${dataset}.history_user_activity`;
