"""Features of this emulator beyond the official one, through real processes: fault injection set at start
and changed while running (admin client, served only when asked for), durability across kill -9, health, and
start-up errors."""

from __future__ import annotations

import signal
import socket
import threading
import time

import grpc
import pytest
from google.api_core import exceptions
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emulator.pubsub.admin import AdminClient
from emulator.pubsub.errors import EmulatorError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings('ignore:The "api" property:DeprecationWarning'),
    pytest.mark.filterwarnings("ignore:The return_immediately flag is deprecated:DeprecationWarning"),
]


def test_health_service_reports_serving(workbench_emulator):
    with grpc.insecure_channel(workbench_emulator.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_faults_set_at_start_are_deterministic(fresh_emulator, connect):
    """Same seed, same flags: the same messages are duplicated."""
    duplicated = []
    for _ in range(2):
        emulator = fresh_emulator("--seed", "42", "--duplicate-rate", "0.3")
        pubsub = connect(emulator)
        topic = "projects/p/topics/dups"
        pubsub.publisher.create_topic(name=topic)
        sub = "projects/p/subscriptions/dups"
        pubsub.subscriber.create_subscription(name=sub, topic=topic)
        pubsub.publish(topic, *[b"%d" % i for i in range(50)])
        seen: list[bytes] = []
        for _ in range(100):
            response = pubsub.subscriber.pull(
                request={"subscription": sub, "max_messages": 1, "return_immediately": True}, timeout=5
            )
            if not response.received_messages:
                break
            seen.extend(m.message.data for m in response.received_messages)
            pubsub.subscriber.acknowledge(
                request={"subscription": sub, "ack_ids": [m.ack_id for m in response.received_messages]}
            )
        with AdminClient(emulator.target) as admin:
            count = admin.faults()["counts"]["duplicate"]
        assert len(seen) == 50 + count
        assert count > 0
        duplicated.append(sorted(d for d in set(seen) if seen.count(d) > 1))
        emulator.stop()
    assert duplicated[0] == duplicated[1]


def test_publish_failures_are_retried_by_the_client(fresh_emulator, connect):
    workbench_pubsub = connect(fresh_emulator("--admin"))
    # A fixed name and seed make the decisions, and so the client's retry sleeps, the same on every run.
    topic = "projects/p/topics/publish-failures"
    workbench_pubsub.publisher.create_topic(name=topic)
    sub = workbench_pubsub.subscription(topic)
    with AdminClient(workbench_pubsub.emulator.target) as admin:
        admin.set_faults(topic=topic, publish_failure_rate=0.5, seed=3)
        try:
            # One request per message, so that the seeded decisions hit several requests.
            ids = [workbench_pubsub.publish(topic, b"%d" % i)[0] for i in range(20)]
            failures = admin.faults()["counts_by_resource"].get(topic, {}).get("publish_failure", 0)
        finally:
            admin.clear_faults()
    assert len(set(ids)) == 20
    assert 3 <= failures <= 15
    assert len(workbench_pubsub.pull(sub, 20)) == 20


def test_publish_failure_is_unavailable(admin_pubsub):
    topic = admin_pubsub.topic()
    with AdminClient(admin_pubsub.emulator.target) as admin:
        admin.set_faults(topic=topic, publish_failure_rate=1.0)
        try:
            with pytest.raises(exceptions.ServiceUnavailable):
                admin_pubsub.publisher.api.publish(topic=topic, messages=[{"data": b"x"}], retry=None)
        finally:
            admin.clear_faults(topic)


def test_lost_acks_force_redelivery_through_subscribe(admin_pubsub):
    topic = admin_pubsub.topic()
    sub = admin_pubsub.subscription(topic)
    admin_pubsub.publish(topic, *[b"%d" % i for i in range(20)])
    with AdminClient(admin_pubsub.emulator.target) as admin:
        admin.set_faults(subscription=sub, lost_ack_rate=1.0)
        [first] = admin_pubsub.pull(sub, 1, ack=True)
        admin.clear_faults(sub)
        lost = admin.faults()["counts_by_resource"][sub]["lost_ack"]
    assert lost == 1
    # The "acked" message is still leased; a nack of its ack id brings it back.
    admin_pubsub.subscriber.modify_ack_deadline(
        request={"subscription": sub, "ack_ids": [first.ack_id], "ack_deadline_seconds": 0}
    )
    again = admin_pubsub.pull(sub, 20)
    assert first.message.message_id in {m.message.message_id for m in again}


def test_delay_set_while_running(admin_pubsub):
    topic = admin_pubsub.topic()
    sub = admin_pubsub.subscription(topic)
    with AdminClient(admin_pubsub.emulator.target) as admin:
        admin.set_faults(subscription=sub, delay_ms=800, jitter_ms=100)
        try:
            started = time.monotonic()
            admin_pubsub.publish(topic, b"slow")
            [message] = admin_pubsub.pull(sub, 1)
            waited = time.monotonic() - started
        finally:
            admin.clear_faults(sub)
        assert admin.faults()["counts_by_resource"][sub]["delay"] == 1
    assert message.message.data == b"slow"
    assert waited >= 0.8


def test_admin_refuses_unknown_settings(workbench_admin_emulator):
    with AdminClient(workbench_admin_emulator.target) as admin, pytest.raises(grpc.RpcError) as raised:
        admin.set_faults(explode_rate=1.0)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("method", ["GetFaults", "SetFaults", "ClearFaults"])
def test_without_admin_the_admin_service_is_unimplemented(workbench_emulator, method):
    """Off unless asked for: nothing that reaches the port can inject faults."""
    with grpc.insecure_channel(workbench_emulator.target) as channel:
        call = channel.unary_unary(f"/emulator.pubsub.Admin/{method}")
        with pytest.raises(grpc.RpcError) as raised:
            call(b'{"duplicate_rate": 1.0}', timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_admin_client_says_how_to_turn_the_admin_service_on(workbench_emulator):
    with AdminClient(workbench_emulator.target) as admin:
        with pytest.raises(EmulatorError) as raised:
            admin.set_faults(duplicate_rate=1.0)
        stats = admin.stats()  # the read-only counters stay on
    assert "--admin" in raised.value.fix and "workbench up --pubsub-admin" in raised.value.fix
    assert "topics" in stats


def test_fault_flags_at_start_imply_the_admin_service(fresh_emulator):
    with AdminClient(fresh_emulator("--lost-ack-rate", "0.1").target) as admin:
        assert admin.faults()["global"]["lost_ack_rate"] == 0.1


def test_admin_flag_serves_it_without_faults(workbench_admin_emulator):
    with AdminClient(workbench_admin_emulator.target) as admin:
        assert admin.faults()["global"]["duplicate_rate"] == 0


def test_stats_report_backlog(workbench_pubsub):
    topic = workbench_pubsub.topic()
    sub = workbench_pubsub.subscription(topic)
    workbench_pubsub.publish(topic, b"a", b"b")
    with AdminClient(workbench_pubsub.emulator.target) as admin:
        stats = admin.stats()
    assert stats["topics"][topic]["published"] == 2
    assert stats["subscriptions"][sub]["backlog"] == 2


def test_kill_9_loses_nothing_confirmed(fresh_emulator, connect, tmp_path):
    emulator = fresh_emulator("--data-dir", str(tmp_path))
    pubsub = connect(emulator)
    topic, sub = "projects/p/topics/durable", "projects/p/subscriptions/durable"
    pubsub.publisher.create_topic(name=topic)
    pubsub.subscriber.create_subscription(name=sub, topic=topic)
    ids = pubsub.publish(topic, *[b"%d" % i for i in range(100)])
    acked = pubsub.pull(sub, 30)  # acked through unary Acknowledge, confirmed to the client
    emulator.stop(signal.SIGKILL)

    port = int(emulator.target.rsplit(":", 1)[1])
    restarted = fresh_emulator("--data-dir", str(tmp_path), port=port)
    pubsub = connect(restarted)
    assert pubsub.subscriber.get_subscription(subscription=sub).topic == topic
    rest = pubsub.pull(sub, 70, timeout=10)
    assert len(acked) == 30
    assert {m.message.message_id for m in rest} == set(ids) - {m.message.message_id for m in acked}
    # Message ids keep increasing after the restart.
    [new_id] = pubsub.publish(topic, b"after")
    assert int(new_id) > max(int(i) for i in ids)


def test_port_in_use_is_a_clear_error():
    from emulator.pubsub.server import start

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmulatorError) as raised:
            start("127.0.0.1", port)
    assert "already in use" in raised.value.message
    assert raised.value.fix


def test_unwritable_data_dir_is_a_clear_error(tmp_path):
    from emulator.pubsub.server import start

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(EmulatorError) as raised:
        start("127.0.0.1", 0, data_dir=blocker / "data")
    assert "not writable" in raised.value.message


def test_start_in_process_picks_a_free_port():
    from emulator.pubsub.server import start, wait_healthy

    handle = start("127.0.0.1", 0)
    try:
        assert handle.port > 0
        wait_healthy(handle.target, timeout=5)
    finally:
        handle.stop()
    done = threading.Event()
    threading.Thread(target=lambda: (handle.stop(), done.set())).start()
    assert done.wait(5)  # a second stop is a no-op


def test_module_entry_point_reports_the_port_it_picked():
    """`python -m emulator.pubsub --port 0` (how launchers start it) prints the port it actually bound."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from emulator.pubsub.server import wait_healthy

    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator.pubsub", "--port", "0"],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=str(root)),
        stdout=subprocess.PIPE,
    )
    try:
        line = process.stdout.readline().decode().strip()
        assert line.startswith("listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        wait_healthy(f"127.0.0.1:{port}", timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ipv6_loopback_address_is_bracketed():
    from emulator.pubsub.server import address

    assert address("::1", 8085) == "[::1]:8085"
    assert address("127.0.0.1", 8085) == "127.0.0.1:8085"


def test_per_resource_fault_flag_at_start(fresh_emulator):
    emulator = fresh_emulator("--fault", "projects/p/subscriptions/flaky,lost_ack_rate=0.25,delay_ms=10")
    with AdminClient(emulator.target) as admin:
        report = admin.faults()
    assert report["overrides"]["projects/p/subscriptions/flaky"]["lost_ack_rate"] == 0.25
    assert report["overrides"]["projects/p/subscriptions/flaky"]["delay_ms"] == 10
    assert report["global"]["lost_ack_rate"] == 0


def test_bad_fault_flag_is_refused_at_start():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "emulator.pubsub", "--port", "0", "--fault", "nonsense"],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=str(root)),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"RESOURCE,key=value" in result.stderr


def test_online_compaction_under_load_loses_nothing(tmp_path, monkeypatch):
    """Publishing and acking while the journal is rewritten again and again: after a restart exactly the
    unacked messages are back."""
    from google.cloud import pubsub_v1

    from emulator.pubsub.server import start

    handle = start("127.0.0.1", 0, data_dir=tmp_path)
    handle.journal.next_compaction = 200_000  # compact every few hundred KB instead of every 64 MB
    rewrites = []
    original_rewrite = handle.journal.rewrite
    # Count every rewrite, whether this test or the server's upkeep thread triggered it.
    handle.journal.rewrite = lambda top, records: (rewrites.append(top), original_rewrite(top, records))
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", handle.target)
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic, sub = "projects/p/topics/compacted", "projects/p/subscriptions/compacted"
    try:
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=sub, topic=topic)
        published: set[str] = set()
        acked: set[str] = set()
        for round_ in range(15):
            futures = [publisher.publish(topic, b"x" * 2000, round=str(round_)) for _ in range(100)]
            published.update(f.result() for f in futures)
            response = subscriber.pull(request={"subscription": sub, "max_messages": 90}, timeout=10)
            subscriber.acknowledge(
                request={"subscription": sub, "ack_ids": [m.ack_id for m in response.received_messages]}
            )
            acked.update(m.message.message_id for m in response.received_messages)
            handle.journal.next_compaction = min(handle.journal.next_compaction, 200_000)
            handle.store.maybe_compact()
    finally:
        publisher.stop()
        subscriber.close()
        handle.stop()
    assert len(rewrites) >= 1

    restarted = start("127.0.0.1", 0, data_dir=tmp_path)
    try:
        left = {d.msg.seq for d in restarted.store.subscriptions[sub].messages.values()}
    finally:
        restarted.stop()
    assert {str(seq) for seq in left} == published - acked
