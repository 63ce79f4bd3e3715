-- Time travel and change tracking: examples, not applied. Time travel reaches back max_time_travel_hours
-- (168, ddl/00_datasets.sql); beyond that, the daily snapshots (ddl/ops/snapshots.sql) take over.

-- 1. What did yesterday's report see? Query a table as it was at a moment (partition filter still applies).
SELECT DATE(order_date) AS day, COUNT(DISTINCT order_id) AS orders
FROM `${project}.${dataset}.orders` FOR SYSTEM_TIME AS OF TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
WHERE order_date >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 8 DAY)
GROUP BY day;

-- 2. Undo a bad backfill: copy the table as it was before the MERGE (zero-copy clone), check it, then swap it in.
CREATE TABLE `${project}.${dataset}.orders_before_backfill`
CLONE `${project}.${dataset}.orders` FOR SYSTEM_TIME AS OF TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 2 HOUR);

-- 3. Restore from a daily snapshot older than the time-travel window.
CREATE TABLE `${project}.${dataset}.inventory_restored`
CLONE `${project}.${dataset}_snapshots.inventory_20250208`;

-- 4. Change tracking: the rows appended in the last hour, with when each was committed. An incremental job
-- (refreshing a materialised orders_current, feeding a downstream system) keeps its last _CHANGE_TIMESTAMP and
-- asks only for what came after it; APPENDS reads back as far as time travel does.
SELECT order_id, status, order_date, event_id, _CHANGE_TYPE AS change_type, _CHANGE_TIMESTAMP AS committed_at
FROM APPENDS(TABLE `${project}.${dataset}.orders`, TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR), NULL);
