"""kafka-python against Sluice: admin, produce/consume in every codec, offsets, restarts."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import InvalidReplicationFactorError, TopicAlreadyExistsError

from conftest import CODECS, check_round_trip, payloads

N = 10_000


def produce(b, topic, msgs, codec, partitions=3):
    p = KafkaProducer(
        bootstrap_servers=b.bootstrap, compression_type=None if codec == "none" else codec, acks="all", linger_ms=5
    )
    futures = [
        p.send(topic, key=k, value=v, headers=h, timestamp_ms=ts, partition=i % partitions)
        for i, (k, v, h, ts) in enumerate(msgs)
    ]
    p.flush(timeout=120)
    for f in futures:
        f.get(timeout=60)
    p.close()


def consume(b, topic, partitions, expect, timeout=90):
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in partitions]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = {p: [] for p in partitions}
    total = 0
    deadline = time.time() + timeout
    while total < expect and time.time() < deadline:
        for tp, records in c.poll(timeout_ms=1000).items():
            for r in records:
                got[tp.partition].append((r.key, r.value or b"", [(k, v or b"") for k, v in r.headers], r.timestamp, r.offset))
                total += 1
    c.close()
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_every_codec_survives_restart(broker, codec):
    topic = f"kp-{codec}"
    KafkaAdminClient(bootstrap_servers=broker.bootstrap).create_topics([NewTopic(topic, 3, 1)])
    msgs = payloads(N, seed=len(codec))
    produce(broker, topic, msgs, codec)
    check_round_trip(consume(broker, topic, [0, 1, 2], N), msgs, [0, 1, 2])
    broker.restart()
    check_round_trip(consume(broker, topic, [0, 1, 2], N), msgs, [0, 1, 2])


def test_admin_and_offsets(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    a.create_topics([NewTopic("ko", 1, 1, topic_configs={"segment.bytes": "65536"})])
    with pytest.raises(TopicAlreadyExistsError):
        a.create_topics([NewTopic("ko", 1, 1)])
    with pytest.raises(InvalidReplicationFactorError):
        a.create_topics([NewTopic("ko3", 1, 3)])
    msgs = [(b"k", b"x" * 100, [], 1_700_000_000_000 + i) for i in range(3000)]
    produce(broker, "ko", msgs, "gzip", partitions=1)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    tp = TopicPartition("ko", 0)
    assert c.beginning_offsets([tp])[tp] == 0
    assert c.end_offsets([tp])[tp] == 3000
    assert c.offsets_for_times({tp: 1_700_000_000_000 + 1234})[tp].offset == 1234
    assert c.offsets_for_times({tp: 1_900_000_000_000})[tp] is None
    c.close()
    a.delete_topics(["ko"])
    assert "ko" not in a.list_topics()
    a.close()
