"""Replays: a run that sends an earlier run's events again under the same event ids, on purpose.

Every run draws new event ids (generator.stream: the ids come from the seed and the run's id namespace), so a
rerun is never mistaken for repeats. A replay names the earlier run; it reuses that run's generator settings and
its id namespace, so message i of the replay is message i of the original, with the same event id. A pipeline that
deduplicates by event id drops what it already holds; reconcile finds those events in the sinks under the earlier
run's id (runs_sharing_ids) and reports them as held by an earlier run, which fails only a run that did not ask
for a replay.

    origin = read_manifest("20261207-091500-ab12")
    config = replay_config(origin)          # GeneratorConfig with the origin's seed, shares and ids_of
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from generator.stream import GeneratorConfig
from publisher.errors import PublishError


def id_namespace(manifest: dict[str, Any]) -> str:
    """The namespace a run's event ids were drawn from: the run it replays (transitively), else its own id.

    Runs recorded before ids had namespaces drew them from the seed alone, per worker: those runs share ids with
    every run of the same seed and worker count, which is what their namespace says."""
    generator = manifest.get("generator") or {}
    if "ids_of" not in generator:
        workers = (manifest.get("plan") or {}).get("workers", 1)
        return f"seed:{generator.get('seed', 0)}:workers:{workers}"
    return generator["ids_of"] or manifest["run_id"]


def replays(manifest: dict[str, Any]) -> str | None:
    """The run whose ids this run sends again, or None for a run with ids of its own."""
    return (manifest.get("generator") or {}).get("ids_of")


def runs_sharing_ids(manifest: dict[str, Any], manifests: Iterable[dict[str, Any]]) -> list[str]:
    """The other runs whose events carry ids from the same namespace as this run's (its original, its replays)."""
    namespace = id_namespace(manifest)
    return sorted(
        m["run_id"] for m in manifests if m.get("run_id") and m["run_id"] != manifest["run_id"]
        and id_namespace(m) == namespace
    )  # fmt: skip


def replay_config(origin: dict[str, Any]) -> GeneratorConfig:
    """The generator settings that send `origin`'s events again under its ids."""
    generator = origin.get("generator")
    if origin.get("phases"):
        # Each phase drew its events from settings of its own: one generator cannot send them again.
        raise PublishError(
            f"run {origin.get('run_id')} is a run of phases (`workbench check`'s scenarios), which one publish "
            "cannot replay",
            "run the battery again with `workbench check` and the same --seed (the same events under new ids)",
        )
    if not generator or "ids_of" not in generator:
        raise PublishError(
            f"run {origin.get('run_id')} was recorded by an older workbench, whose event ids cannot be drawn again",
            "replay a run published by this version, or publish with the same --seed for the same events",
        )
    return replace(GeneratorConfig.from_dict(generator), ids_of=id_namespace(origin))
