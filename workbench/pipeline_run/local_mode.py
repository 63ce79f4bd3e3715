"""Local mode for a Beam job run in this process on the local stack: the stream (`workbench run-pipeline`) and the
backfill (`workbench backfill`) set it up here, and only here, so that they cannot drift apart.

    enter_local_mode(local_endpoints(emulator, bigquery_emulator), "./output", history_uri="s3://...")

It points the clients at the emulators through their environment variables (PUBSUB_EMULATOR_HOST,
STORAGE_EMULATOR_HOST, and the local S3 server's AWS_* for a history on s3://), turns off the GCE metadata probe,
and gives Beam's own GCP clients (the gs:// filesystem) anonymous credentials: the emulators ask for none, and a
machine without Application Default Credentials would otherwise wait on the lookup or fail it. Because Beam's
gs:// filesystem is then anonymous, a gs:// output root is refused without the GCS emulator: real Cloud Storage would
refuse every write, after the job had read its whole input.
"""

from __future__ import annotations

import logging
import os

from endpoints import Endpoints
from endpoints.storage import use_anonymous_beam_credentials
from workbench.errors import WorkbenchError
from workbench.localstack.stack import PUBSUB_ENV, S3_ENV, STORAGE_ENV


def enter_local_mode(local: Endpoints, output_root: str, history_uri: str | None = None) -> None:
    """Set this process up for a local Beam job against the emulators in `local` (stack.local_endpoints) that
    writes its files under `output_root`."""
    if output_root.startswith("gs://") and not local.storage:
        raise WorkbenchError(
            f"--output-root {output_root} needs the GCS emulator in local mode",
            "start it with `workbench up --gcs` (or write to a local directory)",
        )
    if history_uri and history_uri.startswith("s3://") and local.s3 and not os.environ.get(S3_ENV):
        from workbench.localstack.stack import env_exports

        os.environ.update({k: v for k, v in env_exports().items() if k.startswith("AWS_")})
    if local.pubsub:
        os.environ[PUBSUB_ENV] = local.pubsub
    if local.storage:
        os.environ[STORAGE_ENV] = local.storage
    os.environ.setdefault("NO_GCE_CHECK", "true")
    use_anonymous_beam_credentials()
    # Beam's own warnings (coders, unparsed flags) would scroll the live view away; errors still show.
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
