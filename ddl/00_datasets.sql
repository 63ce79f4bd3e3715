-- The event dataset and its snapshot dataset.
-- The project, dataset and location placeholders are filled in by `workbench bq apply` (workbench/bq_apply.py).

-- max_time_travel_hours = 168 (the maximum, 7 days): time travel only stores bytes that were changed or
-- deleted, and these tables are append-only (streaming inserts, backfill MERGEs that only insert), so the
-- window costs next to nothing, and it is the window for undoing a bad backfill or a mistaken DELETE.
-- Storage billing stays LOGICAL (the default): under PHYSICAL billing time-travel bytes would be billed;
-- switch only after INFORMATION_SCHEMA.TABLE_STORAGE shows a compression ratio above ~2x.
CREATE SCHEMA IF NOT EXISTS `${project}.${dataset}`
OPTIONS (
  location = "${location}",
  max_time_travel_hours = 168,
  description = "Event Workbench: order, inventory and user activity events from Pub/Sub backend-events-topic, plus dead letters"
);

-- Daily table snapshots (ddl/ops/snapshots.sql) live in their own dataset: their retention and IAM differ from
-- the live tables (analysts read them, only the snapshot job writes), and a dataset default expiration keeps
-- them from piling up. 35 days covers a month-end close plus a few days to notice a problem.
CREATE SCHEMA IF NOT EXISTS `${project}.${dataset}_snapshots`
OPTIONS (
  location = "${location}",
  default_table_expiration_days = 35,
  description = "Daily read-only snapshots of the event tables (35-day retention)"
);
