"""Client quotas: producer_byte_rate, consumer_byte_rate and
request_percentage on client ids and users, set and described with AlterClientQuotas/DescribeClientQuotas
(through kafka-python's protocol layer: none of the installed clients has a
quota admin call), slow producers and consumers to their rate without losing
a record (measured as a ratio of the rate, not as a timed assertion), tell
the client to wait (throttle_time_ms), persist across a restart, and refuse
what is not supported."""

import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, scrape

RATE = 200_000  # bytes per second
VALUE = b"q" * 1000


@pytest.fixture
def qbroker(tmp_path):
    # 100 ms windows, 11 of them: a client's rate is measured over about a second.
    b = Broker(tmp_path / "data", ["--quota-window-ms", "100", "--quota-window-num", "11"]).start()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.create_topics([NewTopic("q", 1, 1)]).values():
        f.result(timeout=30)
    yield b
    b.stop()


def admin(b):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=b.bootstrap)


def alter(ka, entity, ops, validate_only=False):
    """AlterClientQuotas for one entity [(type, name or None)] with ops
    {key: value or None to remove}; returns (error_code, message)."""
    from kafka.protocol.admin import AlterClientQuotasRequest as R
    req = R(entries=[R.EntryData(
        entity=[R.EntryData.EntityData(entity_type=t, entity_name=n) for t, n in entity],
        ops=[R.EntryData.OpData(key=k, value=float(v or 0), remove=v is None) for k, v in ops.items()],
    )], validate_only=validate_only)
    resp = ka._manager.run(ka._manager.send, req)
    e = resp.entries[0]
    return e.error_code, e.error_message


def describe(ka, components, strict=False):
    """DescribeClientQuotas: {((type, name), ...): {key: value}}."""
    from kafka.protocol.admin import DescribeClientQuotasRequest as R
    req = R(components=[R.ComponentData(entity_type=t, match_type=m, match=n)
                        for t, m, n in components], strict=strict)
    resp = ka._manager.run(ka._manager.send, req)
    assert resp.error_code == 0, resp
    return {tuple((d.entity_type, d.entity_name) for d in e.entity):
            {v.key: v.value for v in e.values} for e in resp.entries}


def throttle_count(b, quota):
    return scrape(b).get(("sluice_quota_throttle_seconds_count", (("quota", quota),)), 0)


def test_quotas_are_set_described_and_refused_as_kafka(qbroker):
    ka = admin(qbroker)
    try:
        assert alter(ka, [("client-id", "app")], {"producer_byte_rate": 1024}) == (0, None)
        assert alter(ka, [("user", None)], {"consumer_byte_rate": 4096}) == (0, None)
        assert alter(ka, [("user", "alice"), ("client-id", None)],
                     {"producer_byte_rate": 10, "consumer_byte_rate": 20}) == (0, None)
        # validate_only changes nothing.
        assert alter(ka, [("client-id", "dry")], {"producer_byte_rate": 5}, validate_only=True)[0] == 0
        everything = describe(ka, [])
        assert everything == {
            (("client-id", "app"),): {"producer_byte_rate": 1024.0},
            (("user", None),): {"consumer_byte_rate": 4096.0},
            (("user", "alice"), ("client-id", None)): {"producer_byte_rate": 10.0,
                                                       "consumer_byte_rate": 20.0},
        }
        # EXACT (0), DEFAULT (1), SPECIFIED (2); strict leaves out wider entities.
        assert list(describe(ka, [("client-id", 0, "app")])) == [(("client-id", "app"),)]
        assert list(describe(ka, [("user", 1, None)], strict=True)) == [(("user", None),)]
        assert len(describe(ka, [("user", 2, None)])) == 2
        # A request percentage need not be whole; byte rates must be.
        assert alter(ka, [("client-id", "x")], {"request_percentage": 12.5}) == (0, None)
        assert describe(ka, [("client-id", 0, "x")]) == {
            (("client-id", "x"),): {"request_percentage": 12.5}}
        assert alter(ka, [("client-id", "x")], {"producer_byte_rate": 1.5})[0] == 42
        assert alter(ka, [("client-id", "x")], {"request_percentage": None}) == (0, None)
        # What is not served is refused, not ignored.
        assert alter(ka, [("client-id", "x")], {"controller_mutation_rate": 50})[0] == 42  # INVALID_REQUEST
        assert alter(ka, [("ip", "10.0.0.1")], {"producer_byte_rate": 5})[0] == 42
        assert alter(ka, [("client-id", "x")], {"producer_byte_rate": -1})[0] == 42
        # Removing a value.
        assert alter(ka, [("user", None)], {"consumer_byte_rate": None}) == (0, None)
    finally:
        ka.close()
    qbroker.restart()
    ka = admin(qbroker)
    try:
        assert len(describe(ka, [])) == 2
    finally:
        ka.close()


def test_a_producer_is_slowed_to_its_quota_without_losing_a_record(qbroker):
    ka = admin(qbroker)
    try:
        assert alter(ka, [("client-id", "slow-producer")], {"producer_byte_rate": RATE})[0] == 0
    finally:
        ka.close()
    throttles = []
    p = Producer({"bootstrap.servers": qbroker.bootstrap, "client.id": "slow-producer",
                  "linger.ms": 5, "batch.size": 16384,
                  "throttle_cb": lambda event: throttles.append(event.throttle_time)})
    n = 1200
    errors = []
    t0 = time.time()
    for i in range(n):
        p.produce("q", value=VALUE, on_delivery=lambda err, msg: errors.append(err))
        p.poll(0)
    assert p.flush(120) == 0
    elapsed = time.time() - t0
    assert errors == [None] * n
    ratio = (n * len(VALUE) / elapsed) / RATE
    # Unthrottled this takes well under a tenth of the time (ratio above 10).
    assert ratio < 1.6, f"produced at {ratio:.2f} times the quota"
    assert throttles, "the client was never told to wait"
    assert throttle_count(qbroker, "producer_byte_rate") > 0

    from kafka import KafkaProducer
    kp = KafkaProducer(bootstrap_servers=qbroker.bootstrap, client_id="slow-producer",
                       linger_ms=5)
    t0 = time.time()
    futures = [kp.send("q", VALUE) for _ in range(600)]
    for f in futures:
        f.get(timeout=120)
    kp.close()
    ratio = (600 * len(VALUE) / (time.time() - t0)) / RATE
    assert ratio < 1.6, f"kafka-python produced at {ratio:.2f} times the quota"


def test_a_consumer_is_slowed_to_its_quota_and_reads_everything(qbroker):
    # Batches well under what the quota allows per response: a single batch
    # larger than that goes out whole (the quota then only delays the next).
    p = Producer({"bootstrap.servers": qbroker.bootstrap, "linger.ms": 5, "batch.size": 16384})
    n = 1200
    for i in range(n):
        p.produce("q", value=b"%06d" % i + VALUE)
        p.poll(0)
    assert p.flush(60) == 0
    ka = admin(qbroker)
    try:
        assert alter(ka, [("client-id", "slow-consumer")], {"consumer_byte_rate": RATE})[0] == 0
    finally:
        ka.close()
    c = Consumer({"bootstrap.servers": qbroker.bootstrap, "client.id": "slow-consumer",
                  "group.id": "slow", "auto.offset.reset": "earliest"})
    c.subscribe(["q"])
    seen = set()
    t0 = None
    deadline = time.time() + 120
    while len(seen) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        if t0 is None:
            t0 = time.time()
        seen.add(m.value()[:6])
    elapsed = time.time() - t0
    c.close()
    assert seen == {b"%06d" % i for i in range(n)}
    ratio = (n * (len(VALUE) + 6) / elapsed) / RATE
    assert ratio < 1.6, f"consumed at {ratio:.2f} times the quota"
    assert throttle_count(qbroker, "consumer_byte_rate") > 0


def metadata_throttles(b, client_id, n):
    """Sends n Metadata requests as client_id: the throttle_time_ms of each
    response and the seconds they took."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import NodeNotReadyError
    from kafka.protocol.metadata import MetadataRequest
    ka = KafkaAdminClient(bootstrap_servers=b.bootstrap, client_id=client_id)

    def send():
        # kafka-python honours a throttle itself (KIP-219): the connection
        # is paused for it and refuses to send until then.
        while True:
            try:
                return ka._manager.run(ka._manager.send, MetadataRequest[4](topics=None), 1)
            except NodeNotReadyError:
                time.sleep(0.01)
    try:
        t0 = time.time()
        throttles = [send().throttle_time_ms for _ in range(n)]
        return throttles, time.time() - t0
    finally:
        ka.close()


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data


def raw_metadata_throttles(b, client_id, n):
    """Metadata v4 requests, one at a time, on a plain socket that ignores
    throttles: the throttle_time_ms of each response and the seconds each
    took from sending to its response."""
    import socket
    import struct
    cid = client_id.encode()
    throttles, took = [], []
    with socket.create_connection(("127.0.0.1", b.port)) as s:
        for i in range(n):
            # Header v1 (api key 3, version 4, correlation id, client id),
            # then all topics (null array) without auto-creation.
            body = struct.pack(">hhih", 3, 4, i, len(cid)) + cid + struct.pack(">ib", -1, 0)
            t0 = time.time()
            s.sendall(struct.pack(">i", len(body)) + body)
            resp = recv_exact(s, struct.unpack(">i", recv_exact(s, 4))[0])
            took.append(time.time() - t0)
            correlation_id, throttle = struct.unpack(">ii", resp[:8])
            assert correlation_id == i
            throttles.append(throttle)
    return throttles, took


def test_a_request_quota_throttles_busy_clients_and_not_others(qbroker):
    ka = admin(qbroker)
    try:
        # A millionth of a thread: any client using it is over at once.
        assert alter(ka, [("client-id", "busy")], {"request_percentage": 0.0001})[0] == 0
        # Five percent of a thread for an idle long-polling consumer.
        assert alter(ka, [("client-id", "idle")], {"request_percentage": 5})[0] == 0
    finally:
        ka.close()
    before = throttle_count(qbroker, "request_percentage")
    throttles, _ = metadata_throttles(qbroker, "busy", 12)
    assert all(t > 0 for t in throttles[2:]), throttles
    # The broker mutes the connection for each throttle (KIP-219): a client
    # that ignores throttle_time_ms gets its next answer no sooner.
    throttles, took = raw_metadata_throttles(qbroker, "busy", 8)
    assert all(t > 0 for t in throttles[1:]), throttles
    assert sum(took[1:]) >= 0.9 * sum(throttles[:-1]) / 1000, (took, throttles)
    assert throttle_count(qbroker, "request_percentage") > before
    free, _ = metadata_throttles(qbroker, "free", 12)
    assert free == [0] * 12

    # Produce under the quota: throttled, nothing lost.
    told = []
    p = Producer({"bootstrap.servers": qbroker.bootstrap, "client.id": "busy", "linger.ms": 5,
                  "throttle_cb": lambda event: told.append(event.throttle_time)})
    errors = []
    for i in range(300):
        p.produce("q", value=b"%d" % i, on_delivery=lambda err, msg: errors.append(err))
        p.poll(0)
    assert p.flush(120) == 0
    assert errors == [None] * 300
    assert told, "the producer was never told to wait"

    # Parked time is not work: a consumer long-polling an idle topic for
    # seconds (each fetch parked up to 500 ms) stays far within 5 %.
    told = []
    c = Consumer({"bootstrap.servers": qbroker.bootstrap, "client.id": "idle", "group.id": "idle",
                  "fetch.wait.max.ms": 500, "auto.offset.reset": "latest",
                  "throttle_cb": lambda event: told.append(event.throttle_time)})
    c.subscribe(["q"])
    deadline = time.time() + 4
    while time.time() < deadline:
        c.poll(0.5)
    c.close()
    assert told == [], told
