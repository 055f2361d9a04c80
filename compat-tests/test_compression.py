"""Broker-side compression (`compression.type` on a topic): batches produced
in another codec are stored recompressed in the topic's codec, with the
records, keys, headers and offsets unchanged, and every client reads them
back; `producer` keeps each producer's codec."""

import struct

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from readers import read_aiokafka, read_confluent, read_kafka_python, read_kafkajs, read_kcat

CODEC_ID = {"uncompressed": 0, "none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
# (topic codec, what confluent-kafka sends, what kafka-python sends)
CASES = [
    ("lz4", "gzip", "zstd"),
    ("zstd", "lz4", "gzip"),
    ("snappy", "zstd", "lz4"),
    ("gzip", "snappy", "lz4"),
    ("uncompressed", "lz4", "gzip"),
]
N = 300


def stored_codecs(data_dir, topic):
    """The codec of every batch in partition 0's segment files."""
    out = []
    for seg in sorted((data_dir / topic / "0").glob("*.log")):
        b = seg.read_bytes()
        at = 0
        while at + 61 <= len(b):
            (length,) = struct.unpack_from(">i", b, at + 8)
            if length <= 0:
                break
            (attributes,) = struct.unpack_from(">h", b, at + 21)
            out.append(attributes & 0x07)
            at += 12 + length
    return out


@pytest.mark.parametrize("target,confluent_codec,kp_codec", CASES)
def test_batches_are_stored_in_the_topics_codec_and_every_client_reads_them(
    broker, target, confluent_codec, kp_codec
):
    from kafka import KafkaProducer

    topic = f"comp-{target}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1, config={"compression.type": target})]).values():
        f.result()
    want = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": confluent_codec, "linger.ms": 20})
    for i in range(N):
        v = b"ck-%d-" % i + b"payload " * (i % 13)
        p.produce(topic, key=b"k%d" % i, value=v, headers={"h": b"%d" % i})
        want.append(v)
    p.flush(30)
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=kp_codec, linger_ms=20)
    for i in range(N):
        v = b"kp-%d-" % i + b"data " * (i % 11)
        kp.send(topic, key=b"j%d" % i, value=v)
        want.append(v)
    kp.flush(30)
    kp.close()

    codecs = stored_codecs(broker.data_dir, topic)
    assert codecs and set(codecs) == {CODEC_ID[target]}, codecs

    assert read_confluent(broker.bootstrap, topic, "read_uncommitted", len(want)) == want
    assert read_kafka_python(broker.bootstrap, topic, len(want)) == want
    assert read_aiokafka(broker.bootstrap, topic, len(want)) == want
    assert read_kcat(broker.bootstrap, topic) == want
    if target in ("lz4", "gzip", "uncompressed"):
        # kafkajs ships gzip and takes LZ4 as a plugged-in codec (lz4js); its snappy and
        # zstd codecs are native add-ons the suite does not build.
        assert read_kafkajs(broker.bootstrap, topic, len(want)) == want


def test_producer_keeps_each_producers_codec_and_levels_are_applied(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([
        NewTopic("comp-producer", 1, 1),
        NewTopic("comp-zstd-19", 1, 1, config={"compression.type": "zstd", "compression.zstd.level": "19"}),
        NewTopic("comp-zstd-1", 1, 1, config={"compression.type": "zstd", "compression.zstd.level": "1"}),
    ]).values():
        f.result()
    text = b" ".join(b"%d the quick brown fox %d" % (i, i * i) for i in range(4000))
    for codec in ["gzip", "lz4", "none"]:
        p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec})
        # Compressible: librdkafka sends a batch plain when its codec does not shrink it.
        p.produce("comp-producer", value=codec.encode() * 1000)
        p.flush(30)
    assert stored_codecs(broker.data_dir, "comp-producer") == [1, 3, 0]
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "none"})
    for t in ("comp-zstd-19", "comp-zstd-1"):
        p.produce(t, value=text)
    p.flush(30)
    size = {t: sum(s.stat().st_size for s in (broker.data_dir / t / "0").glob("*.log"))
            for t in ("comp-zstd-19", "comp-zstd-1")}
    assert size["comp-zstd-19"] < size["comp-zstd-1"], size
    assert read_confluent(broker.bootstrap, "comp-zstd-19", "read_uncommitted", 1) == [text]
    # A change of compression.type applies to the next append.
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    res = ConfigResource("topic", "comp-producer", incremental_configs=[
        ConfigEntry("compression.type", "snappy", incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res]).values():
        f.result()
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "gzip"})
    p.produce("comp-producer", value=b"after" * 1000)
    p.flush(30)
    assert stored_codecs(broker.data_dir, "comp-producer") == [1, 3, 0, 2]
