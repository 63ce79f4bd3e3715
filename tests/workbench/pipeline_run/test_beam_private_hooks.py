"""Canaries for the private parts of Beam that local mode relies on, read from apache-beam 2.77.0.

Each exists because Beam offers no public route (the comments at the hooks say why). A Beam upgrade that moves
one fails here, by name, instead of as a local run that hangs, loses metrics or asks for credentials.
"""

from __future__ import annotations

import inspect

import apache_beam
import pytest

from workbench.pipeline_run import direct_runner


def test_the_beam_version_these_hooks_were_read_from():
    assert apache_beam.__version__.startswith("2.77."), "re-read every hook below against the new Beam, then bump"


def test_the_direct_runners_pubsub_read_evaluator():
    from apache_beam.runners.direct.transform_evaluator import _PubSubReadEvaluator

    assert inspect.signature(_PubSubReadEvaluator.finish_bundle).parameters.keys() == {"self"}
    source = inspect.getsource(_PubSubReadEvaluator)
    for attribute in ("self._sub_name", "self._outputs", "self._evaluation_context", "self._applied_ptransform",
                      "self.source"):  # fmt: skip
        assert attribute in source, f"_PubSubReadEvaluator no longer has {attribute}"
    assert "with_attributes" in inspect.getsource(apache_beam.io.gcp.pubsub._PubSubSource)


def test_the_executors_metrics_container_and_the_dofn_spec_functions():
    from apache_beam.runners.direct import executor, transform_evaluator
    from apache_beam.transforms import userstate

    assert executor.MetricsContainer is not None
    for module in (userstate, transform_evaluator):
        assert callable(module.get_dofn_specs) and callable(module.is_stateful_dofn)
    with direct_runner.per_bundle_metrics():
        assert executor.MetricsContainer is direct_runner._bundle_metrics_container
    original = transform_evaluator.get_dofn_specs
    assert original is userstate.get_dofn_specs  # the evaluator calls the function it imported from userstate
    with direct_runner.cached_dofn_specs():
        assert transform_evaluator.get_dofn_specs is not original
        assert transform_evaluator.get_dofn_specs is userstate.get_dofn_specs
    assert transform_evaluator.get_dofn_specs is original


def test_anonymous_credentials_are_what_gcsio_asks_for(monkeypatch):
    from apache_beam.internal.gcp import auth
    from apache_beam.options.pipeline_options import PipelineOptions

    from endpoints.storage import use_anonymous_beam_credentials

    for name in ("_credentials_lock", "_credentials", "_credentials_init"):
        assert hasattr(auth._Credentials, name), f"apache_beam.internal.gcp.auth._Credentials.{name} is gone"
    monkeypatch.setattr(auth._Credentials, "_credentials_init", False)
    monkeypatch.setattr(auth._Credentials, "_get_service_credentials",
                        staticmethod(lambda options: pytest.fail("looked credentials up")))  # fmt: skip
    use_anonymous_beam_credentials()
    assert auth.get_service_credentials(PipelineOptions()) is None
    assert "auth.get_service_credentials(pipeline_options)" in inspect.getsource(
        apache_beam.io.gcp.gcsio.create_storage_client
    )


def test_a_processing_time_timer_holds_the_watermark_at_its_input_and_an_event_time_one_at_its_firing():
    """What pipeline/files.py's choice of an event-time forget timer rests on (not a hook, a behaviour): read from
    the SDK harness Dataflow runs, so a Beam that changes the hold rule is noticed here."""
    from apache_beam.runners.worker.bundle_processor import OutputTimer

    source = inspect.getsource(OutputTimer.set)
    assert "hold_timestamp=ts if TimeDomain.is_event_time(self._time_domain) else" in source
    assert "self._input_timestamp" in source
