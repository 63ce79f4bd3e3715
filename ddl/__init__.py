"""The BigQuery data model and its applier: `*.sql` here is applied in name order by ddl.apply (`workbench bq
apply`), and `ops/*.sql` are run-books for `workbench bq render`. The SQL is package data, found with
importlib.resources, so the same in a checkout and in an installed wheel."""
