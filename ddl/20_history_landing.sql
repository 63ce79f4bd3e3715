-- Landing tables for the historical events in S3: one per event type, with exactly the event's fields (the
-- JSON in S3 is the assessment's wire format, so LOAD DATA maps it 1:1 and rejects anything that is not).
-- ddl/ops/history_load.sql fills them; ddl/ops/history_merge.sql moves new events into the live tables,
-- deduplicated against what was streamed, and empties them again.
--
-- Built with CREATE TABLE ... AS SELECT ... WHERE <no rows> so their columns follow the live tables and
-- cannot drift. CTAS makes every column NULLABLE, which is what a landing table wants: a load never fails
-- on a missing field, and the MERGE decides what is good. The filter names the partition column so that it
-- also satisfies user_activity's require_partition_filter, and it reads no partition at all.
-- Not partitioned: the tables are empty between backfills, and partition expiry would count from the old
-- event dates and drop historical rows the moment they arrive.
CREATE TABLE IF NOT EXISTS `${project}.${dataset}.history_orders`
OPTIONS (description = "S3 history landing table for orders; empty between backfills")
AS SELECT * EXCEPT (event_id, message_id, publish_time, ingest_time, run_id, schema_version)
FROM `${project}.${dataset}.orders`
WHERE order_date < TIMESTAMP "1970-01-01";

CREATE TABLE IF NOT EXISTS `${project}.${dataset}.history_inventory`
OPTIONS (description = "S3 history landing table for inventory; empty between backfills")
AS SELECT * EXCEPT (event_id, message_id, publish_time, ingest_time, run_id, schema_version)
FROM `${project}.${dataset}.inventory`
WHERE timestamp < TIMESTAMP "1970-01-01";

CREATE TABLE IF NOT EXISTS `${project}.${dataset}.history_user_activity`
OPTIONS (description = "S3 history landing table for user activity; empty between backfills")
AS SELECT * EXCEPT (event_id, message_id, publish_time, ingest_time, run_id, schema_version)
FROM `${project}.${dataset}.user_activity`
WHERE timestamp < TIMESTAMP "1970-01-01";
