-- Time travel and change tracking: examples, not applied. Time travel reaches back max_time_travel_hours
-- (168, ddl/00_datasets.sql); beyond that, the daily snapshots (ddl/ops/snapshots.sql) take over.

-- 1. What did yesterday's report see? Query a table as it was at a moment (partition filter still applies).
SELECT DATE(order_date) AS day, COUNT(DISTINCT order_id) AS orders
FROM `${project}.${dataset}.orders` FOR SYSTEM_TIME AS OF TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
WHERE order_date >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 8 DAY)
GROUP BY day;

-- 2. Undo a bad backfill: remove what it added, by the run id its rows carry (history_merge.sql names each
-- backfill s3-backfill-<UTC time> in run_id), rather than swapping in a clone of the table as it was: a clone
-- holds nothing streamed after its moment, so swapping it in would throw those rows away. Count first, then
-- delete from each table. DML cannot change rows streamed in the last 30 minutes; the time filter keeps clear of
-- them (a backfill's rows are loaded, not streamed) and is the partition filter user_activity requires.
SELECT COUNT(*) AS rows_of_the_backfill FROM `${project}.${dataset}.orders` WHERE run_id = "s3-backfill-20250208T020000";
DELETE FROM `${project}.${dataset}.orders`
WHERE run_id = "s3-backfill-20250208T020000" AND order_date < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 40 MINUTE);
DELETE FROM `${project}.${dataset}.inventory`
WHERE run_id = "s3-backfill-20250208T020000" AND timestamp < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 40 MINUTE);
DELETE FROM `${project}.${dataset}.user_activity`
WHERE run_id = "s3-backfill-20250208T020000" AND timestamp < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 40 MINUTE);

-- 3. Restore from a daily snapshot older than the time-travel window.
CREATE TABLE `${project}.${dataset}.inventory_restored`
CLONE `${project}.${dataset}_snapshots.inventory_20250208`;

-- 4. Change tracking: the rows appended in the last hour, with when each was committed. An incremental job
-- (refreshing a materialised orders_current, feeding a downstream system) keeps its last _CHANGE_TIMESTAMP and
-- asks only for what came after it; APPENDS reads back as far as time travel does.
SELECT order_id, status, order_date, event_id, _CHANGE_TYPE AS change_type, _CHANGE_TIMESTAMP AS committed_at
FROM APPENDS(TABLE `${project}.${dataset}.orders`, TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR), NULL);
