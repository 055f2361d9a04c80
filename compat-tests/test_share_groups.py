"""Share groups (KIP-932, "queues") with confluent-kafka's ShareConsumer
(librdkafka 2.16, explicit acknowledgement): records handed out under
time-limited locks, acknowledged one by one, released or rejected, and
offered again when a lock runs out or its holder goes away.

Each consumer is a worker subprocess (workers/share_worker.py) printing a
record once the broker confirmed its acknowledgement (commit_sync).
"""

import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, NewTopic, ResourceType)

from conftest import Broker, scrape
from test_groups import Worker, wait_for

# Short member timings, and locks as short as 1 s allowed for the expiry test.
FAST = ["--group-share-heartbeat-interval-ms", "300",
        "--group-share-session-timeout-ms", "6000",
        "--group-share-min-record-lock-duration-ms", "1000"]


@pytest.fixture
def sbroker(tmp_path):
    b = Broker(tmp_path / "data", FAST).start()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.create_topics([NewTopic("q", 1, 1), NewTopic("q3", 3, 1)]).values():
        f.result(timeout=30)
    yield b
    b.stop()


def group_configs(b, group, **configs):
    """Sets share.* configs of a group (GROUP resource, IncrementalAlterConfigs)."""
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    entries = [ConfigEntry(k.replace("_", "."), str(v), incremental_operation=AlterConfigOpType.SET)
               for k, v in configs.items()]
    for f in a.incremental_alter_configs([ConfigResource(ResourceType.GROUP, group,
                                                         incremental_configs=entries)]).values():
        f.result(timeout=30)


def produce(b, topic, values, partitions=1):
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
    for i, v in enumerate(values):
        p.produce(topic, value=v.encode(), partition=i % partitions)
    assert p.flush(30) == 0


def share(b, topic, group, **opts):
    return Worker("share-consumer", b.bootstrap, topic, group, **opts)


def members(b, group):
    return sum(v for (n, labels), v in scrape(b).items()
               if n == "sluice_share_group_members" and ("group", group) in labels)


def records(w, kind="msg"):
    return [e for e in w.snapshot() if e["ev"] == kind]


def accepted(ws):
    return [e["v"] for w in ws for e in records(w) if e["ack"] == "accept"]


def test_consumers_on_one_partition_get_different_records(sbroker):
    group_configs(sbroker, "g1", share_auto_offset_reset="earliest")
    values = [f"v{i}" for i in range(300)]
    # Five records per fetch, so the partition's records spread over members.
    ws = [share(sbroker, "q", "g1", conf={"max.poll.records": 5}) for _ in range(3)]
    try:
        wait_for(lambda: members(sbroker, "g1") == 3, "three members in the group")
        produce(sbroker, "q", values)
        wait_for(lambda: len(accepted(ws)) >= 300, "every record accepted", timeout=90)
        got = accepted(ws)
        assert sorted(got) == sorted(values), "each record accepted exactly once"
        assert sum(1 for w in ws if records(w)) >= 2, "more than one member got records"
    finally:
        for w in ws:
            w.term()


def test_released_expired_and_rejected_records(sbroker):
    group_configs(sbroker, "g2", share_auto_offset_reset="earliest",
                  share_record_lock_duration_ms=1000)
    produce(sbroker, "q", [f"r{i}" for i in range(10)])
    w = share(sbroker, "q", "g2", release=["r3"], reject=["r5"])
    try:
        wait_for(lambda: len(accepted([w])) == 9, "nine records accepted")
        evs = {(e["v"], e["ack"]): e["n"] for e in records(w)}
        assert evs[("r3", "release")] == 1 and evs[("r3", "accept")] == 2, evs
        assert ("r5", "reject") in evs and ("r5", "accept") not in evs, evs
        # Nothing more comes: the rejected record is never offered again.
        time.sleep(2)
        assert len(records(w)) == 11
    finally:
        w.term()
    # A holder that stops acknowledging: its locks run out after 1 s and
    # another member gets the records, delivered a second time.
    produce(sbroker, "q", [f"x{i}" for i in range(5)])
    holder = share(sbroker, "q", "g2", hold_after=0)
    try:
        wait_for(lambda: len(records(holder, "held")) == 5, "the holder got the records")
        taker = share(sbroker, "q", "g2")
        try:
            wait_for(lambda: sorted(accepted([taker])) == [f"x{i}" for i in range(5)],
                     "the expired records offered again")
            assert all(e["n"] == 2 for e in records(taker)), records(taker)
        finally:
            taker.term()
    finally:
        holder.kill()
    m = scrape(sbroker)

    def metric(name):
        return sum(v for (n, labels), v in m.items() if n == name and ("group", "g2") in labels)
    assert metric("sluice_share_group_redeliveries_total") >= 6
    assert metric("sluice_share_group_lock_expiries_total") >= 5
    assert metric("sluice_share_group_archived_total") >= 1
    assert metric("sluice_share_group_acknowledged_total") >= 14


@pytest.mark.parametrize("leave", ["close", "kill"])
def test_a_departing_holder_releases_its_records_at_once(sbroker, leave):
    group = f"g3-{leave}"
    # Locks of 60 s: the records come back long before, because the holder left.
    group_configs(sbroker, group, share_auto_offset_reset="earliest",
                  share_record_lock_duration_ms=60000)
    produce(sbroker, "q", [f"y{i}" for i in range(5)])
    holder = share(sbroker, "q", group, hold_after=0)
    wait_for(lambda: len(records(holder, "held")) == 5, "the holder got the records")
    if leave == "close":
        holder.term()
    else:
        holder.kill()
    taker = share(sbroker, "q", group)
    try:
        wait_for(lambda: len(accepted([taker])) == 5, "the records offered again", timeout=30)
    finally:
        taker.term()


def test_every_record_acknowledged_once_across_a_broker_crash(sbroker):
    group_configs(sbroker, "g4", share_auto_offset_reset="earliest")
    values = [f"z{i}" for i in range(300)]
    produce(sbroker, "q3", values, partitions=3)
    first = share(sbroker, "q3", "g4", hold_after=150, conf={"max.poll.records": 20})
    wait_for(lambda: records(first, "holding"), "half acknowledged, more held")
    first.kill()
    sbroker.kill()
    sbroker.start()
    second = share(sbroker, "q3", "g4")
    try:
        wait_for(lambda: len(set(accepted([first, second]))) == 300, "every record acknowledged",
                 timeout=90)
        time.sleep(1)
        a, b = accepted([first]), accepted([second])
        assert not set(a) & set(b), "a record acknowledged before the crash came back"
        assert len(a) + len(b) == 300, "some record acknowledged twice"
    finally:
        second.term()


def test_a_share_group_id_is_not_a_consumer_group(sbroker):
    group_configs(sbroker, "g5", share_auto_offset_reset="earliest")
    produce(sbroker, "q", ["w0"])
    w = share(sbroker, "q", "g5")
    try:
        wait_for(lambda: accepted([w]) == ["w0"], "the share group is in use")
        errors = []
        c = Consumer({"bootstrap.servers": sbroker.bootstrap, "group.id": "g5",
                      "error_cb": errors.append})
        c.subscribe(["q"])
        deadline = time.time() + 15
        msg = None
        while time.time() < deadline and msg is None:
            m = c.poll(0.5)
            if m is not None and m.error():
                msg = m.error()
        c.close()
        seen = [str(e) for e in errors] + ([str(msg)] if msg else [])
        assert any("INCONSISTENT_GROUP_PROTOCOL" in s for s in seen), seen
        # ListGroups reports it as a share group (kafka-python sends no type filter).
        from kafka.admin import KafkaAdminClient
        admin = KafkaAdminClient(bootstrap_servers=sbroker.bootstrap)
        try:
            listed = admin.list_groups()
        finally:
            admin.close()
        g5 = [g for g in listed if g["group_id"] == "g5"]
        assert g5 and g5[0]["group_type"] == "share" and g5[0]["group_state"] == "Stable", listed
    finally:
        w.term()
