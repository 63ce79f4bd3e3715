"""Reconcile: the proof that every event a run published arrived exactly where it belongs, once and unchanged.

    >>> from endpoints import Endpoints
    >>> from reconcile.run import ReconcileTarget, reconcile
    >>> local = Endpoints(pubsub="127.0.0.1:8085", bigquery="http://127.0.0.1:9050")  # workbench resolves these
    >>> report = reconcile("latest", ReconcileTarget(endpoints=local))                 # doctest: +SKIP
    >>> report.exit_code                                          # doctest: +SKIP
    0

The comparison is SQL written once for BigQuery (reconcile.queries) and run either inside BigQuery (real GCP)
or, transpiled, inside DuckDB (the local stack); reconcile.engine holds the two engines, reconcile.sources the
sink readers, reconcile.report the verdict. The CLI is `workbench reconcile` (workbench/cli/reconcile.py).
"""
