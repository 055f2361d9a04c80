"""confluent-kafka (librdkafka) against Sluice: admin, produce/consume in every codec, offsets, long poll, restarts."""

import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import CODECS, check_round_trip, payloads

N = 10_000


_admins = {}


def admin(b):
    """One AdminClient per broker, kept alive: a collected client cancels its futures."""
    if b.bootstrap not in _admins:
        _admins[b.bootstrap] = AdminClient({"bootstrap.servers": b.bootstrap})
    return _admins[b.bootstrap]


def create(b, name, partitions=1, config=None, validate_only=False):
    fs = admin(b).create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        validate_only=validate_only,
    )
    return fs[name].result(timeout=30)


def produce(b, topic, msgs, codec, partition=None, acks="all"):
    p = Producer({"bootstrap.servers": b.bootstrap, "compression.type": codec, "acks": acks, "linger.ms": 5})
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    for i, (k, v, h, ts) in enumerate(msgs):
        kwargs = {"partition": partition if partition is not None else i % 3} if partition != -1 else {}
        while True:
            try:
                p.produce(topic, key=k, value=v, headers=h, timestamp=ts, on_delivery=cb, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0
    assert errors == []


def consume(b, topic, partitions, expect, timeout=60):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    got = {p: [] for p in partitions}
    deadline = time.time() + timeout
    total = 0
    while total < expect and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        assert m.error() is None, m.error()
        hdrs = [(k, v if v is not None else b"") for k, v in (m.headers() or [])]
        got[m.partition()].append((m.key(), m.value() or b"", hdrs, m.timestamp()[1], m.offset()))
        total += 1
    c.close()
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_every_codec_survives_restart(broker, codec):
    topic = f"rt-{codec}"
    create(broker, topic, partitions=3)
    msgs = payloads(N, seed=hash(codec) & 0xFFFF)
    produce(broker, topic, msgs, codec)
    check_round_trip(consume(broker, topic, [0, 1, 2], N), msgs, [0, 1, 2])
    broker.restart()
    check_round_trip(consume(broker, topic, [0, 1, 2], N), msgs, [0, 1, 2])


def test_admin_errors(broker):
    create(broker, "adm", partitions=2, config={"retention.ms": "3600000"})
    with pytest.raises(KafkaException) as e:
        create(broker, "adm")
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    with pytest.raises(KafkaException) as e:
        admin(broker).create_topics([NewTopic("rf3", 1, replication_factor=3)])["rf3"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    with pytest.raises(KafkaException) as e:
        create(broker, "bad/name")
    assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    with pytest.raises(KafkaException) as e:
        create(broker, "badcfg", config={"no.such.config": "1"})
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
    create(broker, "validated", validate_only=True)
    md = admin(broker).list_topics(timeout=10)
    assert "validated" not in md.topics
    assert len(md.topics["adm"].partitions) == 2
    admin(broker).delete_topics(["adm"])["adm"].result(timeout=30)
    assert "adm" not in admin(broker).list_topics(timeout=10).topics


def test_list_offsets(broker):
    create(broker, "lo", partitions=1)
    msgs = [(b"k", b"v%d" % i, [], 1_700_000_000_000 + 10 * i) for i in range(1000)]
    produce(broker, "lo", msgs, "lz4", partition=0)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    assert c.get_watermark_offsets(TopicPartition("lo", 0), timeout=10) == (0, 1000)
    tp = c.offsets_for_times([TopicPartition("lo", 0, 1_700_000_000_000 + 10 * 500 - 5)], timeout=10)[0]
    assert tp.offset == 500
    tp = c.offsets_for_times([TopicPartition("lo", 0, 1_800_000_000_000)], timeout=10)[0]
    assert tp.offset == -1  # beyond the newest record: end of log
    c.close()


def test_long_poll_wakes_on_produce(broker):
    create(broker, "lp", partitions=1)
    c = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "unused", "fetch.wait.max.ms": 20000}
    )
    c.assign([TopicPartition("lp", 0, 0)])
    c.poll(0.5)  # connect and park a fetch
    sent_at = []

    def later():
        time.sleep(1.0)
        sent_at.append(time.time())
        produce(broker, "lp", [(b"k", b"wake", [], 1_700_000_000_000)], "none", partition=0, acks="1")

    t = threading.Thread(target=later)
    t.start()
    m = None
    deadline = time.time() + 30
    while m is None and time.time() < deadline:
        m = c.poll(0.5)
    t.join()
    assert m is not None and m.value() == b"wake"
    # Woken by the produce, not by the 20 s max wait.
    assert time.time() - sent_at[0] < 10
    c.close()


def test_acked_messages_survive_sigkill(broker):
    create(broker, "crash", partitions=1)
    msgs = payloads(2000, seed=7)
    produce(broker, "crash", msgs, "zstd", partition=0)
    broker.kill()
    broker.start()
    got = consume(broker, "crash", [0], len(msgs))
    assert [(k, v, h, ts) for k, v, h, ts, _ in got[0]] == msgs


def test_unknown_topic_with_auto_create_off(tmp_path):
    from conftest import Broker

    b = Broker(tmp_path / "data", ["--auto-create-topics", "false"]).start()
    try:
        p = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 3000})
        errs = []
        p.produce("nope", b"x", on_delivery=lambda err, m: errs.append(err))
        p.flush(10)
        assert errs and errs[0] is not None
        assert errs[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._MSG_TIMED_OUT)
    finally:
        b.stop()
