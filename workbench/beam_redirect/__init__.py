"""`workbench exec`'s side inside the user's process: an unchanged Beam pipeline on the local stack.

The exec'd process loads startup/sitecustomize.py (first on its PYTHONPATH); once it imports apache_beam, that
calls `activate()`, which
- points Beam's BigQuery IO at the local BigQuery emulator (bigquery.py: Beam has no setting for it),
- refuses, with one line saying what to do instead, what cannot run locally (limits.py),
- reads Pub/Sub through the workbench's local reader unless `workbench exec --stock-read` (runs.py), and
- gives Beam's GCP clients anonymous credentials (no 18 s credential lookup, no metadata-server probe).
What it reads comes from the environment exec sets (settings.py).
"""

from __future__ import annotations

import os


def activate() -> None:
    from workbench.beam_redirect.settings import OWN_PIPELINE_ENV

    if os.environ.get(OWN_PIPELINE_ENV):
        return
    from workbench.beam_redirect.isolation import ours_first

    with ours_first():  # the workbench's `pipeline`, `eventmodel` ... never take the user's module names
        from endpoints.storage import use_anonymous_beam_credentials
        from workbench.beam_redirect import bigquery, runs
        from workbench.beam_redirect.settings import ExecSettings
        from workbench.pipeline_run import direct_runner

    settings = ExecSettings.from_environment()
    endpoint = os.environ.get("BIGQUERY_EMULATOR_HOST") or None
    if endpoint:
        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("PUBSUB_PROJECT_ID")
        bigquery.redirect(endpoint if "://" in endpoint else f"http://{endpoint}", project)
    bigquery.guard_transforms(endpoint)
    use_anonymous_beam_credentials()
    runs.install(settings, direct_runner)
