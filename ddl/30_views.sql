-- Views. Pub/Sub delivers at least once and Dataflow retries bundles, so a table may hold the same event twice;
-- every view below reads each event_id once. Duplicates of one event share its event time and its cluster
-- columns (they are copies of one event), so those columns are part of each dedup window's PARTITION BY: that
-- changes nothing about which rows are kept, and a caller's filter on a PARTITION BY column can be applied
-- before the window, so a filter on the event time (partition pruning) or on the leading cluster column
-- (block pruning) still reaches the table through the view. Confirm: docs/data-model.md, "Confirm on a real project".
-- Ties keep the copy ingested first.

CREATE OR REPLACE VIEW `${project}.${dataset}.orders_deduped`
OPTIONS (description = "orders with each event_id once")
AS
SELECT *
FROM `${project}.${dataset}.orders`
WHERE TRUE  -- QUALIFY needs a WHERE, GROUP BY or HAVING beside it
QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id, order_date, status, order_id ORDER BY ingest_time, message_id) = 1;

CREATE OR REPLACE VIEW `${project}.${dataset}.inventory_deduped`
OPTIONS (description = "inventory with each event_id once")
AS
SELECT *
FROM `${project}.${dataset}.inventory`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id, timestamp, product_id, warehouse_id ORDER BY ingest_time, message_id) = 1;

-- Current state per order: its latest status event. placed_at is when the order was first seen (its first
-- status), so age and "stuck in status" questions need no second query.
CREATE OR REPLACE VIEW `${project}.${dataset}.orders_current`
OPTIONS (description = "one row per order: its latest status")
AS
SELECT
  order_id,
  customer_id,
  status,
  order_date AS status_since,
  MIN(order_date) OVER (PARTITION BY order_id) AS placed_at,
  COUNT(*) OVER (PARTITION BY order_id) AS status_events,
  items,
  shipping_address,
  total_amount,
  event_id
FROM `${project}.${dataset}.orders_deduped`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY order_date DESC, ingest_time DESC) = 1;

-- Order status history as a type 2 slowly changing dimension: one version per status an order was in,
-- valid from the event that set it until the event that replaced it (valid_to NULL = still current).
-- A repeated status (a producer retry that got a new event_id, a replayed old event) starts no new version:
-- versions change only when the tracked attribute changes, as SCD2 should.
CREATE OR REPLACE VIEW `${project}.${dataset}.order_status_history`
OPTIONS (description = "SCD2: one row per order and status with valid_from / valid_to")
AS
WITH ordered AS (
  SELECT
    order_id,
    customer_id,
    status,
    total_amount,
    order_date,
    ingest_time,
    event_id,
    LAG(status) OVER (PARTITION BY order_id ORDER BY order_date, ingest_time) AS previous_status
  FROM `${project}.${dataset}.orders_deduped`
),
versions AS (
  SELECT * FROM ordered
  WHERE previous_status IS NULL OR previous_status != status
)
SELECT
  order_id,
  customer_id,
  status,
  total_amount,
  order_date AS valid_from,
  LEAD(order_date) OVER (PARTITION BY order_id ORDER BY order_date, ingest_time) AS valid_to,
  LEAD(order_date) OVER (PARTITION BY order_id ORDER BY order_date, ingest_time) IS NULL AS is_current,
  event_id
FROM versions;

-- Stock on hand per product and warehouse: the sum of every movement ever recorded.
CREATE OR REPLACE VIEW `${project}.${dataset}.stock_levels`
OPTIONS (description = "stock on hand per product and warehouse, from all inventory movements")
AS
SELECT
  product_id,
  warehouse_id,
  SUM(quantity_change) AS quantity_on_hand,
  SUM(IF(quantity_change > 0, quantity_change, 0)) AS units_in,
  -SUM(IF(quantity_change < 0, quantity_change, 0)) AS units_out,
  COUNT(*) AS movements,
  MAX(timestamp) AS last_movement_at
FROM `${project}.${dataset}.inventory_deduped`
GROUP BY product_id, warehouse_id;

-- User sessions for sessions that started between two dates (inclusive). A table function rather than a
-- plain view because user_activity requires a partition filter: the dates become one before any work is done.
-- Activity is read from one day before to one day after the range so that sessions crossing midnight at
-- either edge are complete; this assumes a session lasts less than a day.
-- (No OPTIONS (description = ...) here: bqemulator rejects OPTIONS on table functions; this comment is its description.)
-- (The body is parenthesised only so that sqlglot, which checks this DDL, parses a WITH inside a table function.)
CREATE OR REPLACE TABLE FUNCTION `${project}.${dataset}.user_sessions_between`(start_date DATE, end_date DATE)
AS (
WITH activity AS (
  SELECT *
  FROM `${project}.${dataset}.user_activity`
  WHERE timestamp >= TIMESTAMP(DATE_SUB(start_date, INTERVAL 1 DAY))
    AND timestamp < TIMESTAMP(DATE_ADD(end_date, INTERVAL 2 DAY))
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY event_id, timestamp, activity_type, user_id ORDER BY ingest_time, message_id
  ) = 1
),
sessions AS (
  SELECT
    metadata.session_id AS session_id,
    ANY_VALUE(user_id) AS user_id,
    ANY_VALUE(metadata.platform) AS platform,
    MIN(timestamp) AS session_start,
    MAX(timestamp) AS session_end,
    TIMESTAMP_DIFF(MAX(timestamp), MIN(timestamp), SECOND) AS duration_seconds,
    COUNT(*) AS activities,
    COUNTIF(activity_type = "view_product") AS product_views,
    COUNTIF(activity_type = "add_to_cart") AS cart_adds,
    COUNTIF(activity_type = "remove_from_cart") AS cart_removes
  FROM activity
  GROUP BY session_id
)
SELECT *
FROM sessions
WHERE DATE(session_start) BETWEEN start_date AND end_date
);

-- The last 30 days of sessions (today included), for dashboards and ad hoc questions; older ranges go through
-- user_sessions_between. The bound lives in the view, so no query through it can scan the whole table.
CREATE OR REPLACE VIEW `${project}.${dataset}.user_sessions`
OPTIONS (description = "sessions that started in the last 30 days (UTC), via user_sessions_between")
AS
SELECT *
FROM `${project}.${dataset}.user_sessions_between`(DATE_SUB(CURRENT_DATE(), INTERVAL 29 DAY), CURRENT_DATE());
