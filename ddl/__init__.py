"""The BigQuery data model as package data: `*.sql` here is applied in name order by `workbench bq apply`, and
`ops/*.sql` are run-books for `workbench bq render`. Nothing to import: workbench.bq_apply finds the files with
importlib.resources, so they are found the same way in a checkout and in an installed wheel."""
