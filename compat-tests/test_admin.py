"""Topic and cluster admin with stock admin clients: describe and alter configs
(legacy and incremental), create partitions under a live consumer group, delete
records (the low watermark survives a restart), describe the cluster, the log
dirs and topic partitions, elect leaders."""

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient, NewPartitions as KpNewPartitions
from kafka.admin import NewTopic as KpNewTopic


def admin(broker):
    # One client per broker process: results are futures of that client, which
    # must outlive them.
    key = (broker.bootstrap, id(broker.proc))
    if getattr(broker, "_admin_key", None) != key:
        broker._admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        broker._admin_key = key
    return broker._admin


def create(broker, name, partitions=1, config=None):
    admin(broker).create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(timeout=30)


def produce(broker, topic, n, partitions=1):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(n):
        p.produce(topic, value=b"%d" % i, partition=i % partitions)
    assert p.flush(30) == 0


def described(broker, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin(broker).describe_configs([res])[res].result(timeout=30)


def test_confluent_describe_and_alter_topic_configs(broker):
    create(broker, "cfg", config={"retention.ms": "3600000", "cleanup.policy": "delete"})
    entries = described(broker, "cfg")
    assert entries["retention.ms"].value == "3600000"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert entries["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert entries["max.message.bytes"].value == "1048588"
    assert entries["flush.messages"].value == "1"
    assert not entries["retention.ms"].is_read_only
    synonyms = entries["retention.ms"].synonyms
    assert "log.retention.ms" in synonyms
    # Every topic config Kafka reports.
    for name in ["compression.type", "message.timestamp.type", "min.insync.replicas", "segment.ms", "preallocate"]:
        assert name in entries, name

    # Incremental: SET, APPEND to a list, DELETE.
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        "cfg",
        incremental_configs=[
            ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    admin(broker).incremental_alter_configs([res])[res].result(timeout=30)
    entries = described(broker, "cfg")
    assert entries["segment.bytes"].value == "1048576"
    assert entries["cleanup.policy"].value == "delete,compact"
    assert entries["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    # An invalid value is refused and nothing changes.
    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        "cfg",
        incremental_configs=[ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(KafkaException) as e:
        admin(broker).incremental_alter_configs([bad])[bad].result(timeout=30)
    assert e.value.args[0].name() == "INVALID_CONFIG"
    # APPEND is only for lists.
    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        "cfg",
        incremental_configs=[ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND)],
    )
    with pytest.raises(KafkaException):
        admin(broker).incremental_alter_configs([bad])[bad].result(timeout=30)
    assert described(broker, "cfg")["segment.bytes"].value == "1048576"

    # Legacy AlterConfigs replaces the whole set of overrides.
    res = ConfigResource(ConfigResource.Type.TOPIC, "cfg", set_config={"retention.bytes": "1000000"})
    admin(broker).alter_configs([res])[res].result(timeout=30)
    entries = described(broker, "cfg")
    assert entries["retention.bytes"].value == "1000000"
    assert entries["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    # Unknown topics and config names.
    res = ConfigResource(ConfigResource.Type.TOPIC, "no-such-topic")
    with pytest.raises(KafkaException) as e:
        admin(broker).describe_configs([res])[res].result(timeout=30)
    assert e.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"


def test_configs_persist_and_apply_across_restart(broker):
    create(broker, "persist")
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        "persist",
        incremental_configs=[ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)],
    )
    admin(broker).incremental_alter_configs([res])[res].result(timeout=30)
    broker.restart()
    assert described(broker, "persist")["max.message.bytes"].value == "2000"
    # Applied without a restart, and still after one: a batch above it is refused.
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "none", "retries": 0})
    errors = []
    p.produce("persist", value=b"x" * 5000, on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert errors and errors[0] is not None and errors[0].name() == "MSG_SIZE_TOO_LARGE"


def test_broker_configs_are_described_and_topic_defaults_are_dynamic(broker):
    a = admin(broker)
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    entries = a.describe_configs([res])[res].result(timeout=30)
    assert entries["log.retention.ms"].value == "604800000"
    assert entries["num.partitions"].value == "1"
    assert entries["num.partitions"].is_read_only
    assert not entries["log.retention.ms"].is_read_only
    # Static broker configs cannot change at run time.
    fixed = ConfigResource(
        ConfigResource.Type.BROKER,
        "1",
        incremental_configs=[ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(KafkaException) as e:
        a.incremental_alter_configs([fixed])[fixed].result(timeout=30)
    assert e.value.args[0].name() == "INVALID_REQUEST"
    # A topic default can: for this broker, and for the cluster.
    create(broker, "inherits")
    create(broker, "overrides", config={"retention.ms": "1000"})
    node = ConfigResource(
        ConfigResource.Type.BROKER,
        "1",
        incremental_configs=[ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)],
    )
    a.incremental_alter_configs([node])[node].result(timeout=30)
    # kafka-python's legacy AlterConfigs replaces this broker's whole dynamic set.
    # (Neither Python client can name the cluster-wide "" resource; tests/admin.rs does.)
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        kp.alter_configs(
            [
                KpConfigResource(
                    ConfigResourceType.BROKER,
                    "1",
                    configs={"log.retention.ms": "7200000", "log.segment.bytes": "2097152"},
                )
            ]
        )
        got = kp.describe_configs([KpConfigResource(ConfigResourceType.BROKER, "1", ["log.segment.bytes"])])
    finally:
        kp.close()
    assert got["broker"]["1"]["log.segment.bytes"]["value"] == "2097152"
    inherits = described(broker, "inherits")
    assert inherits["retention.ms"].value == "7200000"
    assert inherits["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert inherits["segment.bytes"].value == "2097152"
    assert inherits["segment.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert described(broker, "overrides")["retention.ms"].value == "1000"
    bad = ConfigResource(
        ConfigResource.Type.BROKER,
        "1",
        incremental_configs=[ConfigEntry("log.retention.ms", "never", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(KafkaException) as e:
        a.incremental_alter_configs([bad])[bad].result(timeout=30)
    assert e.value.args[0].name() == "INVALID_CONFIG"
    broker.restart()
    inherits = described(broker, "inherits")
    assert inherits["retention.ms"].value == "7200000"
    assert inherits["segment.bytes"].value == "2097152"
    # Removing the dynamic value returns to the static default.
    back = ConfigResource(
        ConfigResource.Type.BROKER,
        "1",
        incremental_configs=[ConfigEntry("log.retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)],
    )
    admin(broker).incremental_alter_configs([back])[back].result(timeout=30)
    assert described(broker, "inherits")["retention.ms"].value == "604800000"


def test_kafka_python_admin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        created = a.create_topics([KpNewTopic("kp-admin", 1, 1, topic_configs={"retention.ms": "7200000"})])
        assert created["topics"][0]["error_code"] == 0
        got = a.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, "kp-admin")])
        entry = got["topic"]["kp-admin"]["retention.ms"]
        assert entry["value"] == "7200000" and entry["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert entry["config_type"] == "LONG"
        a.alter_configs([KpConfigResource(ConfigResourceType.TOPIC, "kp-admin", configs={"retention.ms": "60000"})])
        got = a.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, "kp-admin", ["retention.ms"])])
        assert list(got["topic"]["kp-admin"]) == ["retention.ms"]
        assert got["topic"]["kp-admin"]["retention.ms"]["value"] == "60000"
        a.create_partitions({"kp-admin": KpNewPartitions(total_count=3)})
        topic = a.describe_topics(["kp-admin"])[0]
        assert len(topic["partitions"]) == 3
        assert all(p["leader_id"] == 1 and p["isr_nodes"] == [1] for p in topic["partitions"])
        cluster = a.describe_cluster()
        assert cluster["controller_id"] == 1 and len(cluster["brokers"]) == 1
        dirs = a.describe_log_dirs()[0]["log_dirs"][0]
        assert dirs["error_code"] == 0 and dirs["usable_bytes"] > 0
        sizes = {p["partition_index"] for t in dirs["topics"] if t["name"] == "kp-admin" for p in t["partitions"]}
        assert sizes == {0, 1, 2}
    finally:
        a.close()


def test_create_partitions_under_a_live_group(broker):
    create(broker, "grow", partitions=1)
    cfg = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": "grow-group",
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
    }
    consumers = [Consumer(cfg), Consumer(cfg)]
    for c in consumers:
        c.subscribe(["grow"])
    got = {}

    def poll_all(seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            for c in consumers:
                m = c.poll(0.2)
                if m is not None and not m.error():
                    got[(m.partition(), m.offset())] = m.value()

    poll_all(8)
    res = admin(broker).create_partitions([NewPartitions("grow", 4)])
    res["grow"].result(timeout=30)
    # Growing again to the same count, or down, is refused.
    with pytest.raises(KafkaException) as e:
        admin(broker).create_partitions([NewPartitions("grow", 4)])["grow"].result(timeout=30)
    assert e.value.args[0].name() == "INVALID_PARTITIONS"
    with pytest.raises(KafkaException):
        admin(broker).create_partitions([NewPartitions("grow", 2)])["grow"].result(timeout=30)
    produce(broker, "grow", 40, partitions=4)
    deadline = time.time() + 60
    while len(got) < 40 and time.time() < deadline:
        poll_all(1)
    assert sorted({p for p, _ in got}) == [0, 1, 2, 3]
    assert len(got) == 40
    assigned = set()
    for c in consumers:
        assigned |= {tp.partition for tp in c.assignment()}
    assert assigned == {0, 1, 2, 3}
    for c in consumers:
        c.close()


def test_delete_records_moves_the_low_watermark_durably(broker):
    create(broker, "trim")
    produce(broker, "trim", 10)
    res = admin(broker).delete_records([TopicPartition("trim", 0, 6)])
    low = res[TopicPartition("trim", 0, 6)].result(timeout=30)
    assert low.low_watermark == 6

    def watermarks():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
        w = c.get_watermark_offsets(TopicPartition("trim", 0), timeout=10)
        c.close()
        return w

    assert watermarks() == (6, 10)
    kp = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    assert kp.beginning_offsets([KpTopicPartition("trim", 0)])[KpTopicPartition("trim", 0)] == 6
    kp.close()
    broker.restart()
    assert watermarks() == (6, 10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "trim-read", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("trim", 0, 0)])
    offsets = []
    deadline = time.time() + 30
    while len(offsets) < 4 and time.time() < deadline:
        m = c.poll(1)
        if m is not None and not m.error():
            offsets.append(m.offset())
    c.close()
    assert offsets == [6, 7, 8, 9]
    # kafka-python deletes up to the high watermark.
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        a.delete_records({KpTopicPartition("trim", 0): -1})
    finally:
        a.close()
    assert watermarks() == (10, 10)


def test_describe_cluster_and_topics(broker):
    create(broker, "described", partitions=3)
    a = admin(broker)
    cluster = a.describe_cluster().result(timeout=30)
    assert cluster.controller.id == 1 and len(cluster.nodes) == 1
    assert cluster.cluster_id
    from confluent_kafka import TopicCollection

    topics = a.describe_topics(TopicCollection(["described"]))["described"].result(timeout=30)
    assert len(topics.partitions) == 3
    assert all(p.leader.id == 1 for p in topics.partitions)
