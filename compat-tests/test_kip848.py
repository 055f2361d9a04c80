"""KIP-848 consumer groups (ConsumerGroupHeartbeat) with librdkafka's
`group.protocol=consumer` (confluent-kafka): the broker assigns, members
reconcile incrementally, revoking before anyone else is given a partition.

Each consumer is a worker subprocess (workers/confluent_worker.py) printing
its assignment after every change and each record it consumed after
committing it, as in test_groups.py.
"""

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, scrape
from test_groups import PARTITIONS, Worker, split_ok, wait_for

# Short broker-side timings so the test does not wait for Kafka's 5 s / 45 s.
FAST = ["--group-consumer-heartbeat-interval-ms", "300",
        "--group-consumer-session-timeout-ms", "6000"]


@pytest.fixture
def kbroker(tmp_path):
    b = Broker(tmp_path / "data", FAST).start()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.create_topics([NewTopic("k", PARTITIONS, 1)]).values():
        f.result(timeout=30)
    yield b
    b.stop()


def heartbeats(b):
    """ConsumerGroupHeartbeat requests the broker has served."""
    return sum(v for (name, labels), v in scrape(b).items()
               if name == "sluice_requests_total" and ("api", "ConsumerGroupHeartbeat") in labels)


def produce(b, n, start=0):
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
    for i in range(start, start + n):
        p.produce("k", value=b"%d" % i, partition=i % PARTITIONS)
    assert p.flush(30) == 0


def member(b, group, **opts):
    return Worker("confluent-kafka", b.bootstrap, "k", group, protocol="consumer", **opts)


def shares(ws, n):
    return split_ok(ws) and all(len(w.assignment()) == n for w in ws)


def held_after(w, since):
    """Every partition set w held from event index `since` on."""
    return [set(e["parts"]) for e in w.rebalances()[since:]]


def test_three_members_split_and_share_on_leave_and_on_kill(kbroker):
    produce(kbroker, 600)
    ws = []
    try:
        for _ in range(3):
            ws.append(member(kbroker, "kg"))
        wait_for(lambda: shares(ws, 2), "three members with two partitions each")
        # Every record consumed by someone before anyone stops (a worker
        # reports a record after committing it: one killed in between would
        # leave a committed record nobody reported).
        consumed = lambda: {r for w in ws for r in w.consumed()}  # noqa: E731
        wait_for(lambda: len(consumed()) == 600, "every record consumed")
        kept = [w.assignment() for w in ws[:2]]
        marks = [len(w.rebalances()) for w in ws[:2]]

        # A clean leave: the others take its partitions and lose none of theirs.
        ws[2].term()
        wait_for(lambda: shares(ws[:2], 3), "two members with three partitions each")
        for w, had, mark in zip(ws[:2], kept, marks):
            for held in held_after(w, mark):
                assert had <= held, f"a member lost {had - held} it kept"

        # A SIGKILLed member: its partitions move after the session timeout,
        # and what is produced then reaches the survivor.
        ws[1].kill()
        wait_for(lambda: ws[0].assignment() == set(range(PARTITIONS)),
                 "the survivor takes every partition", timeout=60)
        produce(kbroker, 60, start=600)
        wait_for(lambda: len(consumed()) == 660, "every record consumed")
        per_partition = {}
        for p, o in consumed():
            per_partition.setdefault(p, set()).add(o)
        assert all(per_partition[p] == set(range(110)) for p in range(PARTITIONS))
        # The members used the KIP-848 protocol, not a classic fallback.
        assert heartbeats(kbroker) > 0
    finally:
        for w in ws:
            if w.alive():
                w.kill()


def test_a_restarted_consumer_resumes_at_committed_offsets(kbroker):
    produce(kbroker, 60)
    first = member(kbroker, "resume")
    try:
        wait_for(lambda: len(first.consumed()) == 60, "the first consumer reads 60")
    finally:
        first.term()
    produce(kbroker, 30, start=60)
    second = member(kbroker, "resume")
    try:
        wait_for(lambda: len(second.consumed()) == 30, "the second consumer reads 30")
        time.sleep(1)
        # Only what came after the commits: offsets 10..14 of each partition.
        assert second.consumed() == {(p, o) for p in range(PARTITIONS) for o in range(10, 15)}
    finally:
        second.term()


def test_describe_and_list_report_a_consumer_group(kbroker):
    from confluent_kafka import ConsumerGroupType
    ws = [member(kbroker, "dg", assignor="range") for _ in range(2)]
    try:
        wait_for(lambda: shares(ws, 3), "two members with three partitions each")
        a = AdminClient({"bootstrap.servers": kbroker.bootstrap})
        listed = {g.group_id: g for g in a.list_consumer_groups().result(timeout=30).valid}
        assert listed["dg"].type == ConsumerGroupType.CONSUMER
        d = a.describe_consumer_groups(["dg"])["dg"].result(timeout=30)
        assert d.type == ConsumerGroupType.CONSUMER
        assert d.partition_assignor == "range"
        described = sorted(sorted(tp.partition for tp in m.assignment.topic_partitions)
                           for m in d.members)
        # range: contiguous halves.
        assert described == [[0, 1, 2], [3, 4, 5]]
        assert sorted(sorted(w.assignment()) for w in ws) == described
        assert heartbeats(kbroker) > 0
        members = scrape(kbroker)[("sluice_consumer_group_members", (("group", "dg"),))]
        assert members == 2
    finally:
        for w in ws:
            w.term()


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_a_rolling_upgrade_shares_the_group_between_protocols(kbroker, assignor):
    """Kafka's online migration (`group.consumer.migration.policy`
    bidirectional, the default). With eager `range` members: a KIP-848
    member joining the classic group turns it into a KIP-848 group in which
    the classic members stay, on JoinGroup/SyncGroup/Heartbeat, with
    partitions from the broker's assignor. With `cooperative-sticky`
    members (whose assignments carry assignor data, so Kafka refuses to
    convert their group) the KIP-848 member comes first and the classic
    members join its group. Either way, when the KIP-848 member leaves the
    classic members are a classic group again. Nobody holds a partition
    another holds, and every record is consumed."""
    from confluent_kafka import ConsumerGroupType
    group = f"mixed-{assignor}"
    eager = assignor == "range"
    produce(kbroker, 60)
    everyone = []
    consumed = lambda: {r for w in everyone for r in w.consumed()}  # noqa: E731

    def classic_member():
        w = Worker("confluent-kafka", kbroker.bootstrap, "k", group, assignor=assignor)
        everyone.append(w)
        return w
    try:
        if eager:
            classic = [classic_member() for _ in range(2)]
            wait_for(lambda: shares(classic, 3), "two classic members with three partitions each")
            wait_for(lambda: len(consumed()) == 60, "the classic members read 60")
            modern = member(kbroker, group)
            everyone.append(modern)
        else:
            modern = member(kbroker, group)
            everyone.append(modern)
            wait_for(lambda: len(modern.assignment()) == PARTITIONS, "the KIP-848 member alone")
            classic = [classic_member() for _ in range(2)]
        ws = classic + [modern]
        wait_for(lambda: shares(ws, 2), "three members, either protocol, two partitions each")
        a = AdminClient({"bootstrap.servers": kbroker.bootstrap})
        listed = {g.group_id: g for g in a.list_consumer_groups().result(timeout=30).valid}
        assert listed[group].type == ConsumerGroupType.CONSUMER
        produce(kbroker, 60, start=60)
        wait_for(lambda: len(consumed()) == 120, "every record consumed by the mixed group")
        assert heartbeats(kbroker) > 0
        # The KIP-848 member leaves: a classic group again, split between two.
        modern.term()
        wait_for(lambda: shares(classic, 3), "the classic members take everything back")
        listed = {g.group_id: g for g in a.list_consumer_groups().result(timeout=30).valid}
        assert listed[group].type == ConsumerGroupType.CLASSIC
        produce(kbroker, 60, start=120)
        wait_for(lambda: len(consumed()) == 180, "every record consumed after the downgrade")
        per_partition = {}
        for p, o in consumed():
            per_partition.setdefault(p, set()).add(o)
        assert all(per_partition[p] == set(range(30)) for p in range(PARTITIONS))
    finally:
        for w in everyone:
            if w.alive():
                w.term()


def test_a_group_with_assignor_data_is_not_upgraded(kbroker):
    """As Kafka: a classic group whose assignments carry assignor user data
    (librdkafka's cooperative-sticky leader writes some once there are
    several members) is not converted, as the data would be lost; the
    KIP-848 member is refused with GROUP_ID_NOT_FOUND and the classic
    members keep their partitions."""
    produce(kbroker, 6)
    classic = [Worker("confluent-kafka", kbroker.bootstrap, "k", "sticky",
                      assignor="cooperative-sticky") for _ in range(2)]
    try:
        wait_for(lambda: shares(classic, 3), "two classic members with three partitions each")
        held = [w.assignment() for w in classic]
        modern = member(kbroker, "sticky")
        try:
            wait_for(lambda: any(e["ev"] == "error" for e in modern.snapshot()),
                     "the KIP-848 member is refused")
            errors = [e["error"] for e in modern.snapshot() if e["ev"] == "error"]
            assert any("group id does not exist" in e for e in errors), errors
            assert modern.assignment() == set()
            assert [w.assignment() for w in classic] == held
        finally:
            modern.kill()
    finally:
        for w in classic:
            w.term()


def test_empty_groups_change_protocol_and_keep_their_offsets(kbroker):
    """A group whose members all left converts to the protocol of whoever
    joins next, keeping its committed offsets, as Kafka does."""
    produce(kbroker, 60)
    classic = Worker("confluent-kafka", kbroker.bootstrap, "k", "handover")
    try:
        wait_for(lambda: len(classic.consumed()) == 60, "the classic member reads 60")
    finally:
        classic.term()
    produce(kbroker, 30, start=60)
    modern = member(kbroker, "handover")
    try:
        wait_for(lambda: len(modern.consumed()) == 30, "the KIP-848 member reads 30")
        assert modern.consumed() == {(p, o) for p in range(PARTITIONS) for o in range(10, 15)}
    finally:
        modern.term()
    produce(kbroker, 30, start=90)
    late = Worker("confluent-kafka", kbroker.bootstrap, "k", "handover")
    try:
        wait_for(lambda: len(late.consumed()) == 30, "the classic member reads 30")
        assert late.consumed() == {(p, o) for p in range(PARTITIONS) for o in range(15, 20)}
    finally:
        late.term()


def test_a_static_member_gets_its_partitions_back_after_a_restart(kbroker):
    """A member with group.instance.id leaves with epoch -2 when it closes: its
    partitions stay its own (nobody else is given them) and its next process,
    with the same instance id, gets the same ones back without the other
    member noticing."""
    produce(kbroker, 60)
    one = member(kbroker, "sg", instance_id="s1")
    two = member(kbroker, "sg", instance_id="s2")
    try:
        wait_for(lambda: shares([one, two], 3), "two static members with three partitions each")
        had, others = one.assignment(), two.assignment()
        mark = len(two.rebalances())
        one.term()
        # Well within the 6 s session: nothing moves.
        time.sleep(1.5)
        assert two.assignment() == others
        one = member(kbroker, "sg", instance_id="s1")
        wait_for(lambda: one.assignment() == had, "the restarted member gets its partitions back")
        assert held_after(two, mark) == [], "the other member saw no change"
    finally:
        for w in (one, two):
            if w.alive():
                w.term()


def test_a_regex_subscription_follows_topics_as_they_appear(kbroker):
    """subscribe(["^re-.*"]) sends a KIP-848 regex (RE2/J, whole name): the
    broker assigns the matching topics, and a matching topic created later
    joins the assignment without the consumer doing anything."""
    a = AdminClient({"bootstrap.servers": kbroker.bootstrap})
    for f in a.create_topics([NewTopic("re-a", 2, 1), NewTopic("zz-re-a", 1, 1)]).values():
        f.result(timeout=30)
    p = Producer({"bootstrap.servers": kbroker.bootstrap, "linger.ms": 5})
    for t in ("re-a", "zz-re-a"):
        for i in range(10):
            p.produce(t, value=b"%d" % i, partition=i % (2 if t == "re-a" else 1))
    assert p.flush(30) == 0
    w = Worker("confluent-kafka", kbroker.bootstrap, "^re-.*", "rx", protocol="consumer")
    try:
        topics = lambda: [e["t"] for e in w.snapshot() if e["ev"] == "msg"]  # noqa: E731
        wait_for(lambda: topics().count("re-a") == 10, "the matching topic consumed")
        for f in a.create_topics([NewTopic("re-b", 2, 1)]).values():
            f.result(timeout=30)
        for i in range(10):
            p.produce("re-b", value=b"%d" % i, partition=i % 2)
        assert p.flush(30) == 0
        wait_for(lambda: topics().count("re-b") == 10, "the topic created later consumed")
        assert "zz-re-a" not in topics(), "a regex matches whole names only"
        assert heartbeats(kbroker) > 0
    finally:
        w.term()
