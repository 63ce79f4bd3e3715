"""Beam's DirectRunner ReadFromPubSub and WriteToPubSub against this emulator, unchanged, through
PUBSUB_EMULATOR_HOST. The streaming pipeline runs in a subprocess that is killed once the output arrived."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = Path(__file__).with_name("beam_roundtrip.py")
COUNT = 50


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_read_and_write_pubsub_with_direct_runner(workbench_pubsub):
    pubsub = workbench_pubsub
    pubsub.project = "workbench-local"  # Beam insists on a real-looking project id (6-30 characters)
    source_topic, sink_topic = pubsub.topic(), pubsub.topic()
    source_sub = pubsub.subscription(source_topic)
    sink_sub = pubsub.subscription(sink_topic)
    # Published before the pipeline starts: a named subscription keeps them (a topic read would not).
    pubsub.publish(source_topic, *[b"event-%d" % i for i in range(COUNT)], event_type="order")

    env = dict(os.environ, PUBSUB_EMULATOR_HOST=pubsub.emulator.target, NO_GCE_CHECK="true", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, str(PIPELINE), "--subscription", source_sub, "--topic", sink_topic],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        received = []
        deadline = time.monotonic() + 120
        while len(received) < COUNT and time.monotonic() < deadline and process.poll() is None:
            received.extend(pubsub.pull(sink_sub, COUNT - len(received), timeout=5))
    finally:
        process.kill()
        _, err = process.communicate(timeout=30)
    assert len(received) == COUNT, err.decode()[-3000:]
    assert sorted(m.message.data for m in received) == sorted(b"EVENT-%d" % i for i in range(COUNT))
    for m in received:
        assert dict(m.message.attributes) == {"event_type": "order", "seen_by": "beam"}
    # The reader acked everything it read: the emulator's own counters say so (a pull could not tell, as an
    # unacked message stays leased for its 10 s deadline, and Beam keeps no ack ids to nack).
    from emulator.pubsub.admin import AdminClient

    with AdminClient(pubsub.emulator.target) as admin:
        counters = admin.stats()["subscriptions"][source_sub]
    assert counters["acked"] == COUNT and counters["backlog"] == 0, counters
