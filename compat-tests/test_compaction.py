"""Log compaction (`cleanup.policy=compact`) with stock clients: after the
cleaner runs, consumers of every client read only the newest value of each
key, deleted keys vanish once `delete.retention.ms` has passed, records of
aborted transactions are gone while committed ones stay readable, and keyless
records are refused with INVALID_RECORD."""

import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker
from readers import read_aiokafka, read_confluent, read_kafka_python

# The cleaner looks for dirty logs every 100 ms; segments roll after 200 ms.
ARGS = ["--log-cleaner-backoff-ms", "100", "--transaction-check-interval-ms", "200"]
COMPACT = {
    "cleanup.policy": "compact",
    "segment.ms": "200",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "2000",
}


@pytest.fixture
def cbroker(tmp_path):
    b = Broker(tmp_path / "data", ARGS).start()
    yield b
    b.stop()


def create(bootstrap, topic, config):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        f.result()


def seal(bootstrap, topic):
    """Waits out segment.ms and appends one record, so every earlier record
    is in a sealed segment the cleaner may clean."""
    time.sleep(0.3)
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, key=b"zz-seal", value=b"seal")
    p.flush(30)


def wait_for(read, done, what):
    """Reads until `done(records)` holds; fails after a minute."""
    deadline = time.time() + 60
    while True:
        got = read()
        if done(got):
            return got
        assert time.time() < deadline, f"{what}: still {len(got)} records"
        time.sleep(0.5)


def latest(records):
    out = {}
    for k, v in records:
        out[k] = v
    return out


@pytest.mark.parametrize("producer", ["confluent-kafka", "kafka-python"])
def test_only_the_newest_value_per_key_survives(cbroker, producer):
    topic = f"compact-{producer}"
    create(cbroker.bootstrap, topic, COMPACT)
    keys = [b"k%02d" % i for i in range(20)]
    want = {}
    if producer == "confluent-kafka":
        p = Producer({"bootstrap.servers": cbroker.bootstrap, "linger.ms": 5, "compression.type": "lz4"})
        for version in range(10):
            for k in keys:
                v = b"%s-v%d" % (k, version)
                p.produce(topic, key=k, value=v)
                want[k] = v
            p.flush(30)
            time.sleep(0.05)
        for k in keys[:5]:
            p.produce(topic, key=k, value=None)
            want[k] = None
        p.flush(30)
    else:
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=cbroker.bootstrap, compression_type="gzip", linger_ms=5)
        for version in range(10):
            for k in keys:
                v = b"%s-v%d" % (k, version)
                p.send(topic, key=k, value=v)
                want[k] = v
            p.flush(30)
            time.sleep(0.05)
        for k in keys[:5]:
            p.send(topic, key=k, value=None)
            want[k] = None
        p.flush(30)
        p.close()
    seal(cbroker.bootstrap, topic)
    want[b"zz-seal"] = b"seal"

    def read():
        return read_confluent(cbroker.bootstrap, topic, "read_uncommitted", 1, idle=1.0, keys=True)

    # First cleaning: one record per key, tombstones kept (their horizon starts now).
    got = wait_for(read, lambda r: len(r) == len(want), "one record per key")
    assert latest(got) == want
    assert [k for k, _ in got].count(b"k00") == 1
    for name, other in [
        ("kafka-python", read_kafka_python(cbroker.bootstrap, topic, len(want), keys=True)),
        ("aiokafka", read_aiokafka(cbroker.bootstrap, topic, len(want), keys=True)),
    ]:
        assert latest(other) == want, name
        assert len(other) == len(want), name
    # After delete.retention.ms a later cleaning drops the tombstones too.
    time.sleep(2.2)
    seal(cbroker.bootstrap, topic)
    live = {k: v for k, v in want.items() if v is not None}
    dead = set(keys[:5])
    got = wait_for(read, lambda r: not dead & {k for k, _ in r}, "tombstones removed")
    assert latest(got) == live
    # One record per key, but for the seal record, whose second copy is in
    # the active segment (never cleaned).
    assert sorted(k for k, _ in got) == sorted(list(live) + [b"zz-seal"])

    from test_metrics import scrape, value

    m = scrape(cbroker)
    assert value(m, "sluice_log_cleaner_cleanings_total") >= 2
    assert value(m, "sluice_log_cleaner_bytes_read_total") > value(m, "sluice_log_cleaner_bytes_written_total")
    assert value(m, "sluice_log_cleaner_dirty_ratio", topic=topic, partition="0") is not None


def test_aborted_transactions_are_removed_and_committed_ones_kept(cbroker):
    topic = "compact-txn"
    create(cbroker.bootstrap, topic, COMPACT)
    p = Producer({"bootstrap.servers": cbroker.bootstrap, "transactional.id": "compact-tx"})
    p.init_transactions(30)
    want = {}
    for round_, commit in enumerate([True, False, True, False]):
        p.begin_transaction()
        for i in range(10):
            k, v = b"t%d" % i, b"r%d-%d" % (round_, i)
            p.produce(topic, key=k, value=v)
            if commit:
                want[k] = v
        p.flush(30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    seal(cbroker.bootstrap, topic)
    want[b"zz-seal"] = b"seal"

    def read(isolation):
        return lambda: read_confluent(cbroker.bootstrap, topic, isolation, 1, idle=1.0, keys=True)

    # Aborted records are removed from the log itself: read_uncommitted
    # consumers stop seeing them too.
    got = wait_for(read("read_uncommitted"), lambda r: len(r) == len(want), "aborted records removed")
    assert latest(got) == want
    got = read_confluent(cbroker.bootstrap, topic, "read_committed", len(want), idle=1.0, keys=True)
    assert latest(got) == want and len(got) == len(want)
    got = read_kafka_python(cbroker.bootstrap, topic, len(want), keys=True)
    assert latest(got) == want and len(got) == len(want)


def test_keyless_records_are_refused(cbroker):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KPError

    topic = "compact-keyless"
    create(cbroker.bootstrap, topic, COMPACT)
    p = Producer({"bootstrap.servers": cbroker.bootstrap, "retries": 0})
    errors = []
    # Separately: one keyless record fails its whole batch.
    p.produce(topic, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    p.produce(topic, key=b"k", value=b"keyed", on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    codes = sorted(e.code() if e else 0 for e in errors)
    assert codes == [0, KafkaError.INVALID_RECORD], errors

    kp = KafkaProducer(bootstrap_servers=cbroker.bootstrap, retries=0)
    with pytest.raises(KPError) as e:
        kp.send(topic, value=b"no key").get(timeout=30)
    assert e.value.errno == 87, e.value
    kp.close()
