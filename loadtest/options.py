"""The load test's own options, registered with Locust's parser so that `locust --help` lists them; each falls
back to an environment variable, as Locust's own options do (LOCUST_<NAME>), and to the Pub/Sub conventions."""

from __future__ import annotations

import os
from typing import Any

from eventmodel import exposure
from eventmodel import resources as names
from generator.stream import GeneratorConfig, parse_malformed_weights

SHAPES = ("steady", "step", "ramp", "spike")


def add_options(parser: Any) -> None:
    group = parser.add_argument_group("Event Workbench (Pub/Sub)")
    env = os.environ.get
    group.add_argument("--topic", default=env("WORKBENCH_TOPIC", names.TOPIC), help="Topic to publish to.")
    group.add_argument(
        "--project",
        default=env("PUBSUB_PROJECT_ID") or env("GOOGLE_CLOUD_PROJECT") or names.DEFAULT_PROJECT,
        help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).",
    )
    group.add_argument(
        "--emulator-host",
        default=env("PUBSUB_EMULATOR_HOST") or "",
        help="Pub/Sub emulator HOST:PORT (else PUBSUB_EMULATOR_HOST); empty for real Pub/Sub with ADC.",
    )
    group.add_argument("--malformed-rate", type=float, default=float(env("WORKBENCH_MALFORMED_RATE", "0.05")),
                       help="Share of malformed messages, 0..1.")  # fmt: skip
    group.add_argument("--malformed-kinds", default=env("WORKBENCH_MALFORMED_KINDS", ""),
                       help="Weights per malformed kind: legacy_id=2,oversize_batch=1.")  # fmt: skip
    group.add_argument("--duplicate-rate", type=float, default=float(env("WORKBENCH_DUPLICATE_RATE", "0.01")),
                       help="Share of exact re-sends, 0..1.")  # fmt: skip
    group.add_argument("--seed", type=int, default=int(env("WORKBENCH_SEED", "0")), help="Same seed, same events.")
    group.add_argument("--run-id", default=env("WORKBENCH_RUN_ID", ""), help="Name the run (default: time-stamped).")
    group.add_argument("--batch-size", type=int, default=int(env("WORKBENCH_BATCH_SIZE", "20")),
                       help="Messages per batch (1..1000); one over 10 MB goes as several requests.")  # fmt: skip
    group.add_argument("--user-rate", type=float, default=float(env("WORKBENCH_USER_RATE", "0")),
                       help="Batches per second per user (0: as fast as the server confirms).")  # fmt: skip
    group.add_argument("--shape", choices=SHAPES, default=env("WORKBENCH_SHAPE", "steady"),
                       help="Load over time, as `workbench publish --profile`: steady, step, ramp, spike.")  # fmt: skip


def check(options: Any) -> None:
    """Bad values stop the run before any user starts, with the fix."""
    for name in ("malformed_rate", "duplicate_rate"):
        value = getattr(options, name)
        if not 0.0 <= value <= 1.0:
            raise SystemExit(f"--{name.replace('_', '-')} must be a share between 0 and 1, got {value}")
    if options.malformed_rate + options.duplicate_rate > 1.0:
        raise SystemExit("--malformed-rate plus --duplicate-rate must not exceed 1")
    try:
        GeneratorConfig(malformed_weights=parse_malformed_weights(options.malformed_kinds)).validate()
    except ValueError as exc:
        raise SystemExit(f"--malformed-kinds: {exc}") from None
    if options.user_rate < 0:
        raise SystemExit(f"--user-rate must be 0 or more batches per second, got {options.user_rate}")
    if not 1 <= options.batch_size <= 1000:
        raise SystemExit(f"--batch-size must be between 1 and 1000 (Pub/Sub's limit), got {options.batch_size}")


def listen_on_loopback(parser: Any) -> None:
    """Locust's web UI and master default to every interface; ours to loopback (its flags or LOCUST_* override)."""
    parser.set_defaults(web_host=names.LOCAL_HOST, master_bind_host=names.LOCAL_HOST)


def warn_if_exposed(options: Any) -> None:
    """One warning line on stderr for each Locust server told to listen beyond loopback."""
    if not getattr(options, "headless", False):
        exposure.warn_if_exposed(options.web_host, "Locust's web UI", "start load tests from this machine")
    if getattr(options, "master", False):
        exposure.warn_if_exposed(
            options.master_bind_host, "the Locust master", "join as a worker and be sent the load test's settings"
        )
