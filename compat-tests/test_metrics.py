"""The metrics endpoint, parsed by the reference Prometheus text parser, with values
checked against what stock clients did: lag in offsets and seconds, request and
traffic counters, partition gauges, groups. Plus /healthz and /readyz."""

import socket
import struct
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import scrape, value


def create(broker, topic, partitions=1):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)


def produce(broker, topic, n):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=b"v%d" % i, key=b"k%d" % i, partition=0)
    assert p.flush(30) == 0


def commit(broker, group, topic, offset):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    c.close()


def test_health_and_readiness(broker):
    assert urllib.request.urlopen(broker.metrics_url + "/healthz", timeout=10).status == 200
    r = urllib.request.urlopen(broker.metrics_url + "/readyz", timeout=10)
    assert r.status == 200 and r.read() == b"ready\n"
    s = scrape(broker)
    assert value(s, "sluice_ready") == 1
    assert value(s, "process_resident_memory_bytes") > 0
    assert value(s, "process_open_fds") > 0
    assert value(s, "sluice_data_dir_free_bytes") > 0
    try:
        urllib.request.urlopen(broker.metrics_url + "/nope", timeout=10)
        raise AssertionError("unknown path answered")
    except urllib.error.HTTPError as e:
        assert e.code == 404


def test_lag_is_high_watermark_minus_committed_and_ages_while_stopped(broker):
    n, m = 50, 20
    create(broker, "lagged")
    produce(broker, "lagged", n)
    commit(broker, "lag-group", "lagged", m)
    labels = dict(group="lag-group", topic="lagged", partition="0")
    s = scrape(broker)
    assert value(s, "sluice_consumer_group_lag", **labels) == n - m
    assert value(s, "sluice_consumer_group_committed_offset", **labels) == m
    first = value(s, "sluice_consumer_group_lag_seconds", **labels)
    assert first >= 0
    time.sleep(2)
    later = value(scrape(broker), "sluice_consumer_group_lag_seconds", **labels)
    assert later >= first + 1.5, (first, later)
    # Caught up: no lag, in offsets or in time.
    commit(broker, "lag-group", "lagged", n)
    s = scrape(broker)
    assert value(s, "sluice_consumer_group_lag", **labels) == 0
    assert value(s, "sluice_consumer_group_lag_seconds", **labels) == 0


def frame(api_key, version, correlation_id, body=b""):
    client = b"metrics-test"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client)) + client
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def roundtrip(sock, data):
    sock.sendall(data)
    size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
    return sock.recv(size, socket.MSG_WAITALL)


def test_request_counters_move_by_the_requests_made(broker):
    before = scrape(broker)
    key = dict(api="ApiVersions", version="0")
    k = 7
    req = frame(18, 0, 1)
    with socket.create_connection(("127.0.0.1", broker.port)) as sock:
        for i in range(k):
            roundtrip(sock, req)
        # ListOffsets v1 for a topic that does not exist: one UNKNOWN_TOPIC_OR_PARTITION.
        topic = b"no-such-topic"
        body = struct.pack(">ii", -1, 1) + struct.pack(">h", len(topic)) + topic
        body += struct.pack(">i", 1) + struct.pack(">iq", 0, -1)
        roundtrip(sock, frame(2, 1, 2, body))
    after = scrape(broker)

    def delta(name, **labels):
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert delta("sluice_requests_total", **key) == k
    assert delta("sluice_request_bytes_total", api="ApiVersions") == k * len(req)
    assert delta("sluice_requests_total", api="ListOffsets", version="1") == 1
    errors = dict(api="ListOffsets", error="UNKNOWN_TOPIC_OR_PARTITION")
    assert delta("sluice_request_errors_total", **errors) == 1
    assert delta("sluice_request_duration_seconds_count", api="ApiVersions") == k
    assert delta("sluice_request_phase_seconds_count", api="ApiVersions", phase="handle") == k
    assert delta("sluice_connections_accepted_total") >= 1


def test_partition_traffic_and_group_metrics(broker):
    n = 30
    create(broker, "traffic")
    produce(broker, "traffic", n)
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "traffic-group",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe(["traffic"])
    got = 0
    deadline = time.time() + 60
    while got < n and time.time() < deadline:
        msg = c.poll(1)
        if msg is not None and not msg.error():
            got += 1
    assert got == n
    c.commit(asynchronous=False)
    s = scrape(broker)
    part = dict(topic="traffic", partition="0")
    assert value(s, "sluice_partition_log_end_offset", **part) == n
    assert value(s, "sluice_partition_high_watermark", **part) == n
    assert value(s, "sluice_partition_log_start_offset", **part) == 0
    assert value(s, "sluice_partition_size_bytes", **part) > 0
    assert value(s, "sluice_partition_segments", **part) == 1
    assert value(s, "sluice_topic_partitions", topic="traffic") == 1
    assert value(s, "sluice_topic_records_in_total", topic="traffic") == n
    assert value(s, "sluice_topic_bytes_in_total", topic="traffic") > 0
    assert value(s, "sluice_topic_records_out_total", topic="traffic") >= n
    assert value(s, "sluice_topic_bytes_out_total", topic="traffic") > 0
    assert value(s, "sluice_consumer_groups", state="Stable") >= 1
    assert value(s, "sluice_consumer_group_members", group="traffic-group") == 1
    assert value(s, "sluice_group_rebalances_total", cause="new_member") >= 1
    assert value(s, "sluice_group_join_parked_seconds_count") >= 1
    assert value(s, "sluice_consumer_group_lag", group="traffic-group", **part) == 0
    c.close()
    # Leaving empties the group: a rebalance for the departure is not needed, but
    # the state gauge follows.
    s = scrape(broker)
    assert value(s, "sluice_consumer_group_members", group="traffic-group") == 0
    assert value(s, "sluice_consumer_groups", state="Empty") >= 1


def test_every_metric_is_documented_and_the_dashboard_uses_real_ones(broker):
    """docs/operations.md describes every family /metrics serves, and the Grafana
    dashboard queries only documented families."""
    import json
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "operations.md").read_text()
    create(broker, "documented")
    produce(broker, "documented", 5)
    commit(broker, "doc-group", "documented", 2)
    body = urllib.request.urlopen(broker.metrics_url + "/metrics", timeout=10).read().decode()
    served = set(re.findall(r"^# TYPE (\S+) ", body, re.M))
    assert len(served) > 30
    undocumented = [n for n in sorted(served) if f"`{n}`" not in doc]
    assert not undocumented, undocumented
    dashboard = (root / "docs" / "grafana" / "sluice.json").read_text()
    json.loads(dashboard)
    used = set(re.findall(r"\b((?:sluice|process)_[a-z_]+)", dashboard))
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    unknown = [n for n in sorted(used) if f"`{n}`" not in doc]
    assert not unknown, unknown


def test_series_past_the_budget_are_summed_under_other(tmp_path):
    from conftest import Broker

    b = Broker(tmp_path / "data", ["--metrics-partitions-max", "1"]).start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in admin.create_topics([NewTopic("b1", 2, 1), NewTopic("b2", 1, 1)]).values():
            f.result(timeout=30)
        p = Producer({"bootstrap.servers": b.bootstrap})
        for topic, part in [("b1", 0), ("b1", 1), ("b2", 0)]:
            for i in range(5):
                p.produce(topic, value=b"x", partition=part)
        assert p.flush(30) == 0
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "budget", "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("b1", 0, 1), TopicPartition("b1", 1, 2), TopicPartition("b2", 0, 3)], asynchronous=False)
        c.close()
        s = scrape(b)

        def series(name):
            return {k[1]: v for k, v in s.items() if k[0] == name}

        ends = series("sluice_partition_log_end_offset")
        assert ends == {(("partition", "0"), ("topic", "b1")): 5, (("partition", "_other"), ("topic", "_other")): 10}
        lag = series("sluice_consumer_group_lag")
        assert len(lag) == 2
        assert lag[(("group", "_other"), ("partition", "_other"), ("topic", "_other"))] == (5 - 2) + (5 - 3)
        assert len(series("sluice_consumer_group_lag_seconds")) == 1, "lag seconds only for listed pairs"
        records = series("sluice_topic_records_in_total")
        assert records == {(("topic", "b1"),): 10, (("topic", "_other"),): 5}
    finally:
        b.stop()
