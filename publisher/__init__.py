"""Driving load: publish the generator's events at a controlled rate and record every outcome for reconcile.

generator/ makes the events; this package sends them. `workbench publish` and the Locust load test (loadtest/)
share it:
    rate.py      rate profiles: how many messages are due t seconds into a run
    run.py       the plan and its workers (threads or processes), pacing, Ctrl-C, the live totals
    sinks.py     where messages go: a Pub/Sub topic or a file of JSON lines; the Pub/Sub preflight
    pubsub.py    the lean gRPC Pub/Sub publisher under the Pub/Sub sink (and the Locust client's channel)
    stats.py     latency histograms and counters that merge across worker processes
    manifest.py  the run manifest under $WORKBENCH_HOME/runs/<run_id>/, read by `workbench reconcile`
    errors.py    PublishError: what went wrong and what to do; the CLI prints it

    plan = PublishPlan(run_id=new_run_id(), rate=500, count=10_000, target=PubSubTarget(...))
    result = publish(plan)            # publisher.run; blocks; result.totals, result.status
"""
