"""Launching the pipeline (package pipeline/): what runs where the job starts, never on Dataflow's workers.

run.py            run(): locally until idle or stopped, then drained; or submitted to Dataflow
preflight.py      checks that fail in seconds, with the fix, before a run that could not work
progress.py       what a run has done so far, from Beam's metrics
direct_runner.py  the DirectRunner's overrides: its Pub/Sub read (acks after the sinks), metrics, specs
ack_ledger.py     the local run's at-least-once bookkeeping: ack once every sink has committed
"""
