-- Daily table snapshots: run once a day shortly after midnight UTC as a BigQuery scheduled query, e.g.
--   bq mk --transfer_config --data_source=scheduled_query --target_dataset="" \
--     --display_name="event table snapshots" --schedule="every day 00:30" \
--     --params="{\"query\": \"$(workbench bq render ddl/ops/snapshots.sql)\"}"
-- (or any scheduler that runs this file after substituting ${project} and ${dataset}).
--
-- Each live table gets a read-only snapshot <table>_YYYYMMDD in ${dataset}_snapshots, as of midnight UTC, the
-- end of the day it is named for. A snapshot stores only the bytes that later differ from the live table, and
-- these tables are append-only, so a month of daily snapshots costs little more than the changes it protects.
-- They outlive time travel (7 days) and the table itself: the snapshot dataset's default expiration (35 days,
-- ddl/00_datasets.sql) removes them. IF NOT EXISTS makes a rerun of the same day a no-op.
-- Dead letters are not snapshotted: they expire after 30 days on purpose.
DECLARE as_of TIMESTAMP DEFAULT TIMESTAMP(CURRENT_DATE("UTC"));
DECLARE suffix STRING DEFAULT FORMAT_DATE("%Y%m%d", DATE_SUB(CURRENT_DATE("UTC"), INTERVAL 1 DAY));

EXECUTE IMMEDIATE FORMAT(
  "CREATE SNAPSHOT TABLE IF NOT EXISTS `${project}.${dataset}_snapshots.orders_%s` CLONE `${project}.${dataset}.orders` FOR SYSTEM_TIME AS OF TIMESTAMP '%t'",
  suffix, as_of);

EXECUTE IMMEDIATE FORMAT(
  "CREATE SNAPSHOT TABLE IF NOT EXISTS `${project}.${dataset}_snapshots.inventory_%s` CLONE `${project}.${dataset}.inventory` FOR SYSTEM_TIME AS OF TIMESTAMP '%t'",
  suffix, as_of);

EXECUTE IMMEDIATE FORMAT(
  "CREATE SNAPSHOT TABLE IF NOT EXISTS `${project}.${dataset}_snapshots.user_activity_%s` CLONE `${project}.${dataset}.user_activity` FOR SYSTEM_TIME AS OF TIMESTAMP '%t'",
  suffix, as_of);
