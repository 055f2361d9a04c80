"""Transactions with stock clients: transactional producers (confluent-kafka,
kafka-python, kafkajs) commit and abort; read_committed consumers of every
client see exactly the committed records, in every codec; a second producer
with the same transactional.id fences the first; and a consume-transform-produce
loop writes every input exactly once through a SIGKILL of the worker and of the
broker."""

import collections
import json
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import CODECS, Broker
from readers import read_aiokafka, read_confluent, read_kafka_python

WORKERS = pathlib.Path(__file__).resolve().parent / "workers"
# Open transactions time out fast, so an abandoned one does not hold
# read_committed consumers for 15 minutes.
ARGS = ["--transaction-check-interval-ms", "200"]


@pytest.fixture
def txbroker(tmp_path):
    b = Broker(tmp_path / "data", ARGS).start()
    yield b
    b.stop()


def create(bootstrap, topic, partitions=3):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result()


def txn_producer(bootstrap, txn_id, **extra):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, **extra})
    p.init_transactions(30)
    return p


def test_read_committed_consumers_see_only_committed_records_in_every_codec(txbroker):
    topic = "tx-codecs"
    create(txbroker.bootstrap, topic)
    committed, everything = [], []
    for codec in CODECS:
        p = txn_producer(txbroker.bootstrap, f"tx-{codec}", **{"compression.type": codec})
        for round_, commit in (("c1", True), ("a1", False), ("c2", True)):
            p.begin_transaction()
            values = [f"{codec}-{round_}-{i}".encode() * 3 for i in range(30)]
            for i, v in enumerate(values):
                p.produce(topic, key=str(i).encode(), value=v)
            p.flush()
            if commit:
                p.commit_transaction(30)
                committed += values
            else:
                p.abort_transaction(30)
            everything += values
    want = collections.Counter(committed)
    for name, got in [
        ("confluent-kafka", read_confluent(txbroker.bootstrap, topic, "read_committed", len(committed))),
        ("kafka-python", read_kafka_python(txbroker.bootstrap, topic, len(committed))),
        ("aiokafka", read_aiokafka(txbroker.bootstrap, topic, len(committed))),
    ]:
        assert collections.Counter(got) == want, f"{name}: {len(got)} records, {len(committed)} committed"
    got = read_confluent(txbroker.bootstrap, topic, "read_uncommitted", len(everything))
    assert collections.Counter(got) == collections.Counter(everything)


def test_a_second_producer_with_the_same_transactional_id_fences_the_first(txbroker):
    topic = "tx-fence"
    create(txbroker.bootstrap, topic, 1)
    first = txn_producer(txbroker.bootstrap, "tx-fence")
    first.begin_transaction()
    first.produce(topic, value=b"zombie")
    first.flush()
    second = txn_producer(txbroker.bootstrap, "tx-fence")
    with pytest.raises(KafkaException) as e:
        first.commit_transaction(30)
    assert e.value.args[0].fatal(), e.value.args[0]
    second.begin_transaction()
    second.produce(topic, value=b"live")
    second.commit_transaction(30)
    assert read_confluent(txbroker.bootstrap, topic, "read_committed", 1) == [b"live"]


def test_kafka_python_transactional_producer_commits_aborts_and_sends_offsets(txbroker):
    from kafka import KafkaProducer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    topic = "tx-kp"
    create(txbroker.bootstrap, topic, 2)
    p = KafkaProducer(bootstrap_servers=txbroker.bootstrap, transactional_id="kp-txn")
    p.init_transactions()
    p.begin_transaction()
    for i in range(10):
        p.send(topic, value=b"kp-commit-%d" % i, partition=i % 2)
    p.send_offsets_to_transaction({TopicPartition(topic, 0): OffsetAndMetadata(5, "", -1)}, "kp-group")
    p.commit_transaction()
    p.begin_transaction()
    for i in range(10):
        p.send(topic, value=b"kp-abort-%d" % i, partition=i % 2)
    p.flush()
    p.abort_transaction()
    p.close()
    got = read_confluent(txbroker.bootstrap, topic, "read_committed", 10)
    assert sorted(got) == sorted(b"kp-commit-%d" % i for i in range(10))
    c = Consumer({"bootstrap.servers": txbroker.bootstrap, "group.id": "kp-group"})
    from confluent_kafka import TopicPartition as CTP

    offsets = c.committed([CTP(topic, 0)], timeout=10)
    c.close()
    assert offsets[0].offset == 5, "the offset committed inside the transaction"


def test_kafkajs_transactions(txbroker):
    node = shutil.which("node")
    assert node, "node is required"
    topic = "tx-kjs"
    create(txbroker.bootstrap, topic, 2)
    out = subprocess.run(
        [node, str(WORKERS / "kafkajs_txn.js"), txbroker.bootstrap, topic],
        capture_output=True,
        timeout=120,
        cwd=WORKERS.parent,
    )
    assert out.returncode == 0, out.stderr.decode()
    r = json.loads(out.stdout.decode().strip().splitlines()[-1])
    want = sorted([f"c1-{i}" for i in range(20)] + [f"c2-{i}" for i in range(20)])
    assert sorted(r["committed"]) == want
    assert len(r["all"]) == 60 and sum(v.startswith("a1-") for v in r["all"]) == 20


class Worker:
    """A consume-transform-produce worker subprocess (workers/txn_worker.py);
    `committed` counts the inputs of the transactions it reported committed."""

    def __init__(self, broker, *args):
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKERS / "txn_worker.py"), broker.bootstrap, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.committed = 0
        self.events = collections.Counter()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            self.events[ev["ev"]] += 1
            self.committed += ev.get("n", 0) if ev["ev"] == "committed" else 0

    def wait_committed(self, n, timeout=60):
        deadline = time.time() + timeout
        while self.committed < n and time.time() < deadline and self.proc.poll() is None:
            time.sleep(0.01)


def test_consume_transform_produce_is_exactly_once_through_sigkills(tmp_path):
    broker = Broker(tmp_path / "data", ARGS).start()
    try:
        n = 6000
        create(broker.bootstrap, "ctp-in")
        create(broker.bootstrap, "ctp-out")
        p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
        for i in range(n):
            p.produce("ctp-in", key=b"%d" % i, value=b"in-%d" % i, partition=i % 3)
        p.flush()

        def out_count():
            return len(read_confluent(broker.bootstrap, "ctp-out", "read_committed", 0, idle=1.0))

        args = ("ctp-in", "ctp-out", "ctp-group", "ctp-txn", "10")
        w = Worker(broker, *args)
        # Kill the worker mid-stream: its open transaction is aborted when the
        # next instance fences it (or by its timeout).
        w.wait_committed(n // 4)
        w.proc.kill()
        w.proc.wait()
        done = w.committed
        assert 0 < done < n, done
        w = Worker(broker, *args)
        w.wait_committed(n // 4)
        # Kill the broker mid-stream, then restart it on the same port and data.
        assert done + w.committed < n, "the worker finished before the broker was killed"
        assert broker.kill() == -9
        broker.start()
        deadline = time.time() + 120
        while time.time() < deadline:
            if w.proc.poll() is not None:
                # Fenced or fatal after the crash: a new instance takes over, as
                # an application's supervisor would.
                w = Worker(broker, *args)
            if out_count() >= n:
                break
            time.sleep(0.5)
        w.proc.terminate()
        w.proc.wait(timeout=30)
        got = read_confluent(broker.bootstrap, "ctp-out", "read_committed", n)
        counts = collections.Counter(got)
        dupes = [v for v, c in counts.items() if c > 1]
        assert not dupes, f"{len(dupes)} outputs written twice, e.g. {dupes[:3]}"
        assert set(counts) == {b"T:in-%d" % i for i in range(n)}
    finally:
        broker.stop()


def test_a_read_committed_consumer_reaches_zero_lag_after_a_commit(txbroker):
    from confluent_kafka import TopicPartition

    topic = "tx-lag"
    create(txbroker.bootstrap, topic, 1)
    p = txn_producer(txbroker.bootstrap, "tx-lag")
    c = Consumer({
        "bootstrap.servers": txbroker.bootstrap,
        "group.id": "tx-lag-group",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    c.subscribe([topic])
    for round_ in range(3):
        p.begin_transaction()
        for i in range(10):
            p.produce(topic, value=b"r%d-%d" % (round_, i))
        p.commit_transaction(30)
        got, deadline = 0, time.time() + 30
        while got < 10 and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                got += 1
        assert got == 10
        tp = TopicPartition(topic, 0)
        # The COMMIT marker is past the last record: the position must move
        # past it too, so the lag reaches 0.
        deadline = time.time() + 10
        while time.time() < deadline:
            c.poll(0.1)
            _, high = c.get_watermark_offsets(tp, timeout=10)
            position = c.position([tp])[0].offset
            if position == high:
                break
        assert high == 11 * (round_ + 1), "ten records and a marker per transaction"
        assert position == high, f"lag {high - position} after the commit"
        c.commit(asynchronous=False)
        assert c.committed([tp], timeout=10)[0].offset == high
    c.close()


def test_misuse_gets_kafkas_errors(tmp_path):
    # A broker whose maximum transaction timeout is below what the client asks for.
    b = Broker(tmp_path / "data", ARGS + ["--transaction-max-timeout-ms", "30000"]).start()
    try:
        p = Producer({
            "bootstrap.servers": b.bootstrap,
            "transactional.id": "tx-misuse",
            "transaction.timeout.ms": 60000,
        })
        with pytest.raises(KafkaException) as e:
            p.init_transactions(30)
        assert e.value.args[0].name() == "INVALID_TRANSACTION_TIMEOUT", e.value.args[0]
        ok = txn_producer(b.bootstrap, "tx-ok", **{"transaction.timeout.ms": 10000})
        # Commit without begin: refused before anything is sent, as with Kafka.
        with pytest.raises(KafkaException) as e:
            ok.commit_transaction(10)
        assert e.value.args[0].name() == "_STATE", e.value.args[0]
    finally:
        b.stop()
