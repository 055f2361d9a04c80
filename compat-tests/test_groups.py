"""Consumer groups with stock clients: rebalancing, eviction, commits across a
broker restart, static membership and librdkafka's cooperative-sticky assignor.

Each consumer runs as a worker subprocess (workers/*) that prints one JSON line per
event: its assignment after every rebalance, and every record it consumed after
committing it. The tests check what Kafka promises: the live members split the
partitions without overlap, and no produced record goes unconsumed.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker

HERE = pathlib.Path(__file__).resolve().parent
WORKERS = HERE / "workers"
PARTITIONS = 6

CLIENTS = ["confluent-kafka", "kafka-python", "aiokafka", "kafkajs"]
STATIC_CLIENTS = ["confluent-kafka", "kafka-python", "aiokafka"]


def worker_cmd(client):
    if client == "kafkajs":
        node = shutil.which("node")
        if node is None or not (HERE / "node_modules" / "kafkajs").exists():
            pytest.fail("kafkajs is not installed: run compat-tests/run-all.sh")
        return [node, str(WORKERS / "kafkajs_worker.js")]
    script = {
        "confluent-kafka": "confluent_worker.py",
        "kafka-python": "kafka_python_worker.py",
        "aiokafka": "aiokafka_worker.py",
        "share-consumer": "share_worker.py",
    }[client]
    return [sys.executable, str(WORKERS / script)]


class Worker:
    """One group consumer in a subprocess, with its event lines collected by a thread."""

    def __init__(self, client, bootstrap, topic, group, **opts):
        self.client = client
        self.events = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [*worker_cmd(client), bootstrap, topic, group, json.dumps(opts)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=HERE,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def assignment(self):
        """Partitions held after the latest rebalance event (empty before the first)."""
        for ev in reversed(self.snapshot()):
            if ev["ev"] in ("assign", "revoke"):
                return set(ev["parts"])
        return set()

    def rebalances(self):
        return [e for e in self.snapshot() if e["ev"] in ("assign", "revoke")]

    def consumed(self):
        return {(e["p"], e["o"]) for e in self.snapshot() if e["ev"] == "msg"}

    def alive(self):
        return self.proc.poll() is None

    def term(self):
        """Graceful close: dynamic members send LeaveGroup."""
        self.proc.terminate()
        assert self.proc.wait(timeout=30) == 0, f"{self.client} worker did not close cleanly"

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=30)


def wait_for(cond, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def split_ok(workers):
    """Live workers hold disjoint, non-empty shares that cover every partition."""
    shares = [w.assignment() for w in workers]
    if any(not s for s in shares):
        return False
    union = set().union(*shares)
    return union == set(range(PARTITIONS)) and sum(len(s) for s in shares) == PARTITIONS


def wait_split(workers, what, timeout=60):
    wait_for(lambda: split_ok(workers), what, timeout)
    # Still split the same way a moment later: the rebalance has settled.
    time.sleep(1.0)
    wait_for(lambda: split_ok(workers), what, timeout)


class Cluster:
    """A broker, a 6-partition topic and a producer that remembers what it wrote."""

    def __init__(self, tmp_path):
        self.broker = Broker(
            tmp_path / "data", ["--group-initial-rebalance-delay-ms", "300"]
        ).start()
        self.topic = "groups-" + uuid.uuid4().hex[:8]
        self.group = "g-" + uuid.uuid4().hex[:8]
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap})
        admin.create_topics([NewTopic(self.topic, PARTITIONS, 1)])[self.topic].result(30)
        self.produced = set()

    def produce(self, n, tag):
        p = Producer({"bootstrap.servers": self.broker.bootstrap, "linger.ms": 5})
        acked = []

        def on_delivery(err, msg):
            assert err is None, err
            acked.append((msg.partition(), msg.offset()))

        for i in range(n):
            p.produce(self.topic, b"%s-%d" % (tag.encode(), i), partition=i % PARTITIONS, on_delivery=on_delivery)
        assert p.flush(30) == 0
        assert len(acked) == n
        self.produced.update(acked)

    def worker(self, client, **opts):
        return Worker(client, self.broker.bootstrap, self.topic, self.group, **opts)

    def wait_consumed(self, workers, timeout=60):
        def done():
            got = set().union(*(w.consumed() for w in workers))
            return self.produced <= got

        wait_for(done, "every produced record to be consumed", timeout)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.broker.stop()


@pytest.mark.parametrize("client", CLIENTS)
def test_members_split_leave_and_eviction(cluster, client):
    """Three members split six partitions; one leaves and the others take over; one
    is killed without leaving and is evicted after the session timeout."""
    workers = [cluster.worker(client) for _ in range(3)]
    try:
        wait_split(workers, "three members to split the partitions")
        cluster.produce(300, "one")
        cluster.wait_consumed(workers)

        workers[0].term()
        wait_split(workers[1:], "two members to take over the leaver's partitions")
        cluster.produce(300, "two")
        cluster.wait_consumed(workers)

        workers[1].kill()
        # Session timeout (6 s) plus a rebalance.
        wait_split(workers[2:], "the survivor to own every partition", timeout=90)
        cluster.produce(300, "three")
        cluster.wait_consumed(workers)
    finally:
        for w in workers:
            if w.alive():
                w.kill()


@pytest.mark.parametrize("client", CLIENTS)
def test_committed_offsets_survive_broker_restart(cluster, client):
    """A consumer commits every record; after a broker restart a new member of the
    group resumes exactly where the first one left off."""
    first = cluster.worker(client)
    try:
        wait_split([first], "the first member to own every partition")
        cluster.produce(120, "before")
        cluster.wait_consumed([first])
    finally:
        first.term()
    assert not [e for e in first.snapshot() if e["ev"] == "commit_error"]
    ends = {}
    for p, o in cluster.produced:
        ends[p] = max(ends.get(p, -1), o + 1)

    assert cluster.broker.restart()
    cluster.produce(120, "after")
    second = cluster.worker(client)
    try:
        cluster.wait_consumed([first, second])
        got = second.consumed()
        for p in range(PARTITIONS):
            offsets = [o for q, o in got if q == p]
            assert offsets and min(offsets) == ends[p], (
                f"partition {p}: resumed at {min(offsets) if offsets else None}, committed {ends[p]}"
            )
    finally:
        second.term()


@pytest.mark.parametrize("client", STATIC_CLIENTS)
def test_static_member_restarts_without_rebalance(cluster, client):
    """A static member (group.instance.id) that restarts within its session timeout
    gets its partitions back, and the other member sees no rebalance."""
    a = cluster.worker(client, instance_id="static-a", session_timeout_ms=30000)
    b = cluster.worker(client, instance_id="static-b", session_timeout_ms=30000)
    a2 = None
    try:
        wait_split([a, b], "two static members to split the partitions")
        share = a.assignment()
        seen_by_b = len(b.rebalances())
        a.term()  # a static member does not send LeaveGroup
        a2 = cluster.worker(client, instance_id="static-a", session_timeout_ms=30000)
        wait_for(lambda: a2.assignment() == share, "the restarted static member to get its partitions back")
        cluster.produce(120, "static")
        cluster.wait_consumed([a, b, a2])
        assert len(b.rebalances()) == seen_by_b, f"the other member rebalanced: {b.rebalances()[seen_by_b:]}"
    finally:
        for w in (a, b, a2):
            if w is not None and w.alive():
                w.kill()


def test_cooperative_sticky_rebalances_incrementally(cluster):
    """librdkafka's cooperative-sticky assignor: a joining member takes partitions
    without the existing members giving up the ones they keep."""
    opts = {"assignor": "cooperative-sticky"}
    workers = [cluster.worker("confluent-kafka", **opts)]
    try:
        wait_split(workers, "the first member to own every partition")
        for _ in range(2):
            workers.append(cluster.worker("confluent-kafka", **opts))
            wait_split(workers, f"{len(workers)} cooperative members to split the partitions")
        cluster.produce(300, "coop")
        cluster.wait_consumed(workers)
        for w in workers:
            revokes = [e for e in w.rebalances() if e["ev"] == "revoke"]
            # Incremental: a revocation only removes some partitions; the rest stay owned.
            for e in revokes:
                assert e["parts"], f"a cooperative revoke emptied a member: {w.rebalances()}"
        assert any(e["ev"] == "revoke" for e in workers[0].rebalances())
    finally:
        for w in workers:
            if w.alive():
                w.kill()
