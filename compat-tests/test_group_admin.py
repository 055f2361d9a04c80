"""Group administration with stock admin clients: list, describe, committed offsets,
offset deletion and group deletion (ListGroups, DescribeGroups, OffsetFetch,
OffsetDelete, DeleteGroups) against a live group."""

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient, TopicPartition

from test_groups import PARTITIONS, Cluster, wait_split


@pytest.fixture
def live_group(tmp_path):
    """A cluster whose group has one member that consumed and committed 60 records."""
    c = Cluster(tmp_path)
    w = c.worker("confluent-kafka")
    wait_split([w], "the member to own every partition")
    c.produce(60, "admin")
    c.wait_consumed([w])
    yield c, w
    if w.alive():
        w.kill()
    c.broker.stop()


def test_confluent_admin_sees_and_deletes_groups(live_group):
    c, w = live_group
    admin = AdminClient({"bootstrap.servers": c.broker.bootstrap})
    listed = admin.list_consumer_groups().result(30)
    states = {g.group_id: str(g.state) for g in listed.valid}
    assert "STABLE" in states[c.group]
    desc = admin.describe_consumer_groups([c.group])[c.group].result(30)
    assert "STABLE" in str(desc.state)
    assert len(desc.members) == 1
    assert sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions) == list(range(PARTITIONS))
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(c.group)])[c.group].result(30)
    committed = {tp.partition: tp.offset for tp in offsets.topic_partitions}
    assert committed == {p: 10 for p in range(PARTITIONS)}
    # A group with members cannot be deleted.
    with pytest.raises(Exception, match="NON_EMPTY_GROUP|not empty"):
        admin.delete_consumer_groups([c.group])[c.group].result(30)
    w.term()
    admin.delete_consumer_groups([c.group])[c.group].result(30)
    listed = admin.list_consumer_groups().result(30)
    assert c.group not in {g.group_id for g in listed.valid}
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(c.group, [CTopicPartition(c.topic, 0)])]
    )[c.group].result(30)
    assert offsets.topic_partitions[0].offset < 0


def test_kafka_python_admin_sees_and_deletes_groups(live_group):
    c, w = live_group
    admin = KafkaAdminClient(bootstrap_servers=c.broker.bootstrap)
    try:
        groups = {g["group_id"]: g for g in admin.list_groups()}
        assert c.group in groups
        desc = admin.describe_groups([c.group])[c.group]
        assert desc["group_state"] == "Stable"
        assert len(desc["members"]) == 1
        offsets = admin.list_group_offsets({c.group: None})[c.group]
        assert {tp.partition: om.offset for tp, om in offsets.items()} == {p: 10 for p in range(PARTITIONS)}
        w.term()
        admin.delete_group_offsets(c.group, [TopicPartition(c.topic, 0)])
        offsets = admin.list_group_offsets({c.group: None})[c.group]
        assert sorted(tp.partition for tp in offsets) == list(range(1, PARTITIONS))
        assert admin.delete_groups([c.group]) == {c.group: "OK"}
        assert c.group not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()
