"""Fuzzed requests against the release broker, then every partition read back by
stock clients: bad input must be refused, never stored where it breaks a consumer.

The fuzzer is `examples/fuzz.rs` (mutations of valid frames for every advertised
API and version, record batches with recomputed CRCs among them). Afterwards
confluent-kafka and kafka-python consume every partition of every topic from the
beginning to its high watermark and must see no error.
"""

import os
import subprocess

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

import pytest

from conftest import ROOT, Broker

FUZZ = os.environ.get("SLUICE_FUZZ_BIN", str(ROOT / "target" / "release" / "examples" / "fuzz"))
CASES = int(os.environ.get("SLUICE_FUZZ_COMPAT_CASES", "3000"))
SEED = os.environ.get("SLUICE_FUZZ_COMPAT_SEED", "4242")


def partitions(broker):
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    return [(t, p) for t, tm in md.topics.items() for p in tm.partitions]


def read_confluent(broker, tps):
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "fuzz-readback",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    total = 0
    try:
        for t, p in tps:
            low, high = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            if high <= low:
                continue
            c.assign([TopicPartition(t, p, low)])
            last = low - 1
            while last < high - 1:
                m = c.poll(10)
                assert m is not None, f"{t}/{p}: no record after offset {last} of [{low}, {high})"
                assert m.error() is None or m.error().code() == KafkaError._PARTITION_EOF, m.error()
                if m.error() is None:
                    last = m.offset()
                    total += 1
            c.unassign()
    finally:
        c.close()
    return total


def read_kafka_python(broker, tps):
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    total = 0
    try:
        for t, p in tps:
            tp = KpTopicPartition(t, p)
            c.assign([tp])
            low = c.beginning_offsets([tp])[tp]
            high = c.end_offsets([tp])[tp]
            c.seek(tp, low)
            last = low - 1
            while last < high - 1:
                batch = c.poll(timeout_ms=10_000)
                assert batch, f"{t}/{p}: no record after offset {last} of [{low}, {high})"
                for rec in batch.get(tp, []):
                    last = rec.offset
                    total += 1
    finally:
        c.close()
    return total


@pytest.fixture
def fuzz_broker(tmp_path):
    # CreatePartitions is in the corpus: a mutated count must not make thousands.
    b = Broker(tmp_path / "data", ["--partitions-max", "64"]).start()
    yield b
    b.stop()


def test_fuzzed_requests_leave_only_readable_data(fuzz_broker):
    broker = fuzz_broker
    r = subprocess.run([FUZZ, broker.bootstrap, str(CASES), SEED], capture_output=True, timeout=900)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert b"fuzz:" in r.stdout
    assert broker.proc.poll() is None, "the broker died"
    tps = [tp for tp in partitions(broker) if not tp[0].startswith("__")]
    assert tps, "the fuzzer created no topics"
    n = read_confluent(broker, tps)
    assert n > 0, "nothing was stored"
    assert read_kafka_python(broker, tps) == n
    print(r.stdout.decode().strip(), f"; {n} records read back by both clients")
