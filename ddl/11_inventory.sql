-- Inventory: one row per stock movement (signed quantity_change with a reason).
--
-- Partitioned by day of the movement's timestamp. Clustered by product_id, warehouse_id: the stock question is
-- always "this product (in this warehouse)", and the stock_levels view aggregates by exactly that pair.
-- require_partition_filter is off: a stock level is the sum of every movement ever made, so the stock view must
-- read all partitions (at scale: a daily stock snapshot table plus today's movements, see docs/data-model.md).
CREATE TABLE IF NOT EXISTS `${project}.${dataset}.inventory` (
  event_type STRING NOT NULL,
  inventory_id STRING NOT NULL OPTIONS (description = "one stock movement; the natural key of the event"),
  product_id STRING NOT NULL,
  warehouse_id STRING NOT NULL,
  quantity_change INT64 NOT NULL OPTIONS (description = "signed: positive for restock/return, negative for sale/damage"),
  reason STRING NOT NULL,
  timestamp TIMESTAMP NOT NULL OPTIONS (description = "when the stock moved; the partitioning column"),
  event_id STRING NOT NULL,
  message_id STRING,
  publish_time TIMESTAMP,
  ingest_time TIMESTAMP NOT NULL,
  run_id STRING,
  schema_version STRING NOT NULL
)
PARTITION BY DATE(timestamp)
CLUSTER BY product_id, warehouse_id
OPTIONS (
  require_partition_filter = FALSE,
  description = "One row per inventory movement; stock_levels sums it per product and warehouse"
);
