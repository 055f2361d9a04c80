"""Record timestamps against the topic's window (KIP-937):
`message.timestamp.before.max.ms` and `message.timestamp.after.max.ms` (one
hour ahead by default, as Kafka 4) refuse out-of-range records with
INVALID_TIMESTAMP, for every client, and store nothing."""

import time

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition, Consumer
from confluent_kafka.admin import AdminClient, NewTopic


def produce_one(bootstrap, topic, ts):
    p = Producer({"bootstrap.servers": bootstrap, "retries": 0})
    result = []
    p.produce(topic, value=b"v", timestamp=ts, on_delivery=lambda err, msg: result.append(err))
    p.flush(30)
    return result[0]


def high_watermark(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw"})
    _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.close()
    return high


def test_confluent_kafka_records_outside_the_window_are_refused(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([
        NewTopic("ts-default", 1, 1),
        NewTopic("ts-recent", 1, 1, config={"message.timestamp.before.max.ms": "60000"}),
    ]).values():
        f.result()
    now = int(time.time() * 1000)
    assert produce_one(broker.bootstrap, "ts-default", now) is None
    assert produce_one(broker.bootstrap, "ts-default", 1_700_000_000_000) is None, "no bound behind by default"
    err = produce_one(broker.bootstrap, "ts-default", now + 2 * 3600 * 1000)
    assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, err
    err = produce_one(broker.bootstrap, "ts-recent", now - 3600 * 1000)
    assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, err
    assert produce_one(broker.bootstrap, "ts-recent", now) is None
    assert high_watermark(broker.bootstrap, "ts-default") == 2
    assert high_watermark(broker.bootstrap, "ts-recent") == 1


def test_kafka_python_gets_invalid_timestamp(broker):
    from kafka import KafkaProducer
    from kafka.errors import InvalidTimestampError

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("ts-kp", 1, 1)]).values():
        f.result()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, retries=0)
    future = p.send("ts-kp", b"v", timestamp_ms=int(time.time() * 1000) + 2 * 3600 * 1000)
    with pytest.raises(InvalidTimestampError):
        future.get(timeout=30)
    p.send("ts-kp", b"v").get(timeout=30)
    p.close()
    assert high_watermark(broker.bootstrap, "ts-kp") == 1


def test_log_append_time_topics_give_consumers_the_brokers_timestamp(broker):
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([
        NewTopic("ts-lat", 1, 1, config={"message.timestamp.type": "LogAppendTime"}),
    ]).values():
        f.result()
    before = int(time.time() * 1000)
    for codec in ["none", "gzip", "lz4", "zstd"]:
        p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec})
        for i in range(20):
            # A producer timestamp far away: LogAppendTime neither checks nor keeps it.
            p.produce("ts-lat", value=b"%s-%d" % (codec.encode(), i), timestamp=1_000)
        p.flush(30)
    after = int(time.time() * 1000)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ts-lat", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("ts-lat", 0, 0)])
    got, deadline = [], time.time() + 30
    while len(got) < 80 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.timestamp())
    c.close()
    assert len(got) == 80
    for kind, ts in got:
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        assert before <= ts <= after

    from kafka import KafkaConsumer

    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000)
    from kafka import TopicPartition as KTP

    kc.assign([KTP("ts-lat", 0)])
    records = list(kc)
    kc.close()
    assert len(records) == 80
    assert all(r.timestamp_type == 1 and before <= r.timestamp <= after for r in records)
