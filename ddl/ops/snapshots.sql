-- Daily table snapshots, run by BigQuery's scheduler once a day at 02:07 UTC (the form of the "Create monthly
-- snapshots with a scheduled query" page; @run_date is the date of each scheduled run):
--   bq query --use_legacy_sql=false --project_id=${project} --location=${location} \
--     --display_name="event table snapshots" --schedule="every day 02:07" \
--     "$(workbench bq render ddl/ops/snapshots.sql --project ${project} --dataset ${dataset} --location ${location})"
-- By hand, for one day (or a day the scheduler missed): drop --schedule and --display_name and pass the date,
--   --parameter=run_date:DATE:2025-02-09     (snapshots of 2025-02-08, as of its end)
-- since @run_date exists only in scheduled runs unless given as a parameter.
-- Why 02:07 and not just after midnight: a snapshot does not include rows still in the streaming buffer
-- (write-optimized storage), and streamed rows can take up to 90 minutes to leave it (Introduction to table
-- snapshots, Limitations; DML, Limitations), so at 00:30 the last hour of the day could be missing. Off the hour:
-- a query scheduled exactly on the hour may run more than once (Scheduling queries). IF NOT EXISTS makes a repeat
-- harmless either way.
--
-- Each live table gets a read-only snapshot <table>_YYYYMMDD in ${dataset}_snapshots, as of midnight UTC, the
-- end of the day it is named for. A snapshot is billed for the bytes it holds that the live table no longer
-- does: appends cost it nothing, but BigQuery's automatic re-clustering rewrites the live table's storage blocks,
-- after which the snapshot keeps the old blocks, so a snapshot's cost can grow towards a full copy of the rows it
-- covers. Measure it in INFORMATION_SCHEMA.TABLE_STORAGE (docs/data-model.md, "Confirm on a real project").
-- They outlive time travel (7 days) and the table itself: the snapshot dataset's default expiration (35 days,
-- ddl/00_datasets.sql) removes them. IF NOT EXISTS makes a rerun of the same day a no-op.
-- Dead letters are not snapshotted: they expire after 30 days on purpose.
DECLARE as_of TIMESTAMP DEFAULT TIMESTAMP(@run_date);  -- midnight UTC that starts the run's day
DECLARE suffix STRING DEFAULT FORMAT_DATE("%Y%m%d", DATE_SUB(@run_date, INTERVAL 1 DAY));

EXECUTE IMMEDIATE FORMAT(
  "CREATE SNAPSHOT TABLE IF NOT EXISTS `${project}.${dataset}_snapshots.orders_%s` CLONE `${project}.${dataset}.orders` FOR SYSTEM_TIME AS OF TIMESTAMP '%t'",
  suffix, as_of);

EXECUTE IMMEDIATE FORMAT(
  "CREATE SNAPSHOT TABLE IF NOT EXISTS `${project}.${dataset}_snapshots.inventory_%s` CLONE `${project}.${dataset}.inventory` FOR SYSTEM_TIME AS OF TIMESTAMP '%t'",
  suffix, as_of);

EXECUTE IMMEDIATE FORMAT(
  "CREATE SNAPSHOT TABLE IF NOT EXISTS `${project}.${dataset}_snapshots.user_activity_%s` CLONE `${project}.${dataset}.user_activity` FOR SYSTEM_TIME AS OF TIMESTAMP '%t'",
  suffix, as_of);
