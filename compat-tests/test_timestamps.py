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
