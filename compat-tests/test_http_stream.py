"""Streaming over Sluice's HTTP gateway: WebSocket consumers with credit
(never more records than granted; a consumer that grants nothing costs the
broker no buffered records), WebSocket producers with per-record acks,
Pulsar's WebSocket consumer, reader and producer protocol, and the
Server-Sent Events tail. Clients: the `websockets` library and requests.
"""

import base64
import json
import time

import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from websockets.sync.client import connect

from conftest import scrape, value
from test_groups import wait_for
from test_http_rest import create_topic, start_gateway


@pytest.fixture
def gw(tmp_path):
    b = start_gateway(tmp_path / "data")
    b.ws = b.url.replace("http://", "ws://")
    yield b
    b.stop()


def fill(b, topic, n, size=100, partition=0):
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, key=b"k%d" % i, value=(b"%d-" % i).ljust(size, b"x"), partition=partition,
                  headers=[("idx", b"%d" % i)])
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def frames(ws, timeout=10):
    """The next frame, parsed."""
    return json.loads(ws.recv(timeout=timeout))


def quiet(ws, seconds=1.0):
    """True when nothing arrives for `seconds` (pings are answered inside the library)."""
    try:
        ws.recv(timeout=seconds)
        return False
    except TimeoutError:
        return True


def test_credit_is_never_exceeded(gw):
    create_topic(gw, "credit", 1)
    fill(gw, "credit", 500)
    got = []
    with connect(f"{gw.ws}/v1/ws/consume?topic=credit&offset=earliest&format=string") as ws:
        ws.send(json.dumps({"type": "credit", "records": 7}))
        while len(got) < 7:
            f = frames(ws)
            assert f["type"] == "records"
            got += f["records"]
        assert len(got) == 7
        assert quiet(ws), "records beyond the credit"
        granted = 7
        for step in [1, 50, 100, 142, 200]:
            ws.send(json.dumps({"type": "credit", "records": step}))
            granted += step
            while len(got) < granted:
                got += frames(ws)["records"]
                assert len(got) <= granted
            assert quiet(ws, 0.3)
    assert [r["offset"] for r in got] == list(range(500))
    first = got[0]
    assert first["key"] == "k0" and first["value"].startswith("0-")
    assert first["headers"] == [{"key": "idx", "value": "0"}]
    assert isinstance(first["timestamp"], int)


def test_byte_credit_and_seek(gw):
    create_topic(gw, "bytes", 1)
    fill(gw, "bytes", 100, size=1000)
    with connect(f"{gw.ws}/v1/ws/consume?topic=bytes&offset=earliest") as ws:
        # 2500 bytes of credit: three 1002-byte records (the last one may pass the bound).
        ws.send(json.dumps({"type": "credit", "records": 100, "bytes": 2500}))
        got = []
        while len(got) < 3:
            got += frames(ws)["records"]
        assert len(got) == 3 and quiet(ws)
        assert base64.b64decode(got[0]["value"]).startswith(b"0-")
        ws.send(json.dumps({"type": "seek", "partition": 0, "offset": 90}))
        ws.send(json.dumps({"type": "credit", "bytes": 100000}))
        more = []
        while len(more) < 10:
            more += frames(ws)["records"]
        assert [r["offset"] for r in more] == list(range(90, 100))
        # Credit past --http-ws-credit-records-max is refused and the socket closed.
        ws.send(json.dumps({"type": "credit", "records": 10**9}))
        f = frames(ws)
        assert f["type"] == "error"


def test_group_consumer_acks_commit(gw):
    create_topic(gw, "acked", 2)
    for p in (0, 1):
        fill(gw, "acked", 5, partition=p)
    with connect(f"{gw.ws}/v1/ws/consume?topic=acked&group=ws-group&offset=earliest") as ws:
        f = frames(ws)
        assert f["type"] == "assignment"
        assert {(x["topic"], x["partition"]) for x in f["partitions"]} == {("acked", 0), ("acked", 1)}
        ws.send(json.dumps({"type": "credit", "records": 100}))
        got = []
        while len(got) < 10:
            f = frames(ws)
            if f["type"] == "records":
                got += f["records"]
        ws.send(json.dumps({"type": "ack", "topic": "acked", "partition": 0, "offset": 4}))
        ws.send(json.dumps({"type": "ack", "partition": 1, "offset": 1}))
        a = AdminClient({"bootstrap.servers": gw.bootstrap})

        def committed():
            from confluent_kafka import ConsumerGroupTopicPartitions
            r = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("ws-group")])["ws-group"].result()
            return {tp.partition: tp.offset for tp in r.topic_partitions}

        wait_for(lambda: committed() == {0: 5, 1: 2}, "the acks to be committed", 30)
    # The socket closed: its member left the group.
    wait_for(lambda: not a.describe_consumer_groups(["ws-group"])["ws-group"].result(timeout=30).members,
             "the socket's member to leave", 30)


def rss_anon_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


def test_a_consumer_without_credit_costs_no_buffered_records(gw):
    create_topic(gw, "flood", 1)
    with connect(f"{gw.ws}/v1/ws/consume?topic=flood&offset=earliest") as ws:
        ws.send(json.dumps({"type": "credit", "records": 10}))
        fill(gw, "flood", 10)
        got = []
        while len(got) < 10:
            got += frames(ws)["records"]
        before = rss_anon_kib(gw.proc.pid)
        # 64 MiB produced while the consumer grants nothing more.
        fill(gw, "flood", 64 * 1024, size=1024)
        assert quiet(ws, 2.0), "records sent without credit"
        samples = scrape(gw)
        assert value(samples, "sluice_http_ws_buffered_bytes") == 0
        assert value(samples, "sluice_http_ws_sessions") == 1
        grown = rss_anon_kib(gw.proc.pid) - before
        # The log is on disk (and in the page cache, not anonymous memory):
        # what the broker holds for the idle consumer is nothing.
        assert grown < 48 * 1024, f"anonymous memory grew {grown} KiB"
        # It reads on from where it stopped once it grants credit again.
        ws.send(json.dumps({"type": "credit", "records": 5}))
        more = []
        while len(more) < 5:
            more += frames(ws)["records"]
        assert [r["offset"] for r in more] == [10, 11, 12, 13, 14]


def test_websocket_producer_acks_each_record(gw):
    create_topic(gw, "wsprod", 3)
    with connect(f"{gw.ws}/v1/ws/produce?topic=wsprod&format=string") as ws:
        for i in range(50):
            ws.send(json.dumps({"id": f"r{i}", "key": f"key-{i % 5}", "value": f"value-{i}",
                                "headers": [{"key": "h", "value": "v"}]}))
        ws.send(json.dumps({"id": "bad", "value": "x", "partition": 9}))
        acks = {}
        while len(acks) < 51:
            a = frames(ws)
            assert a["type"] == "ack"
            acks[a["id"]] = a
    assert acks["bad"]["error_code"] == 40402
    c = Consumer({"bootstrap.servers": gw.bootstrap, "group.id": "check", "auto.offset.reset": "earliest"})
    c.subscribe(["wsprod"])
    seen = {}
    deadline = time.time() + 30
    while len(seen) < 50 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen[(m.partition(), m.offset())] = m
    c.close()
    for i in range(50):
        a = acks[f"r{i}"]
        m = seen[(a["partition"], a["offset"])]
        assert m.value() == b"value-%d" % i and m.key() == b"key-%d" % (i % 5)
        assert m.headers() == [("h", b"v")]
    # Equal keys, equal partitions (Kafka's partitioner).
    for k in range(5):
        assert len({acks[f"r{i}"]["partition"] for i in range(k, 50, 5)}) == 1


def test_pulsar_websocket_clients(gw):
    create_topic(gw, "pulsar", 1)
    base = f"{gw.ws}/ws/v2"
    with connect(f"{base}/producer/persistent/public/default/pulsar") as ws:
        for i in range(6):
            ws.send(json.dumps({"payload": base64.b64encode(b"hello-%d" % i).decode(),
                                "properties": {"n": str(i)}, "context": str(i), "key": "pk"}))
        ws.send(json.dumps({"payload": "not base64!", "context": "bad"}))
        acks = [frames(ws) for _ in range(7)]
    ok = [a for a in acks if a["result"] == "ok"]
    assert len(ok) == 6 and {a["context"] for a in ok} == {str(i) for i in range(6)}
    assert [a for a in acks if a["context"] == "bad"][0]["result"] == "send-error:7"

    # Pull mode: exactly as many messages as permitted.
    url = f"{base}/consumer/persistent/public/default/pulsar/subs?pullMode=true&subscriptionType=Exclusive"
    # A new subscription starts at the end: put its position at the start first.
    a = AdminClient({"bootstrap.servers": gw.bootstrap})
    from confluent_kafka import ConsumerGroupTopicPartitions
    a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions("subs", [TopicPartition("pulsar", 0, 0)])])[
        "subs"].result(timeout=30)
    with connect(url) as ws:
        assert quiet(ws, 0.5)
        ws.send(json.dumps({"type": "permit", "permitMessages": 4}))
        msgs = [frames(ws) for _ in range(4)]
        assert quiet(ws)
        assert [base64.b64decode(m["payload"]) for m in msgs] == [b"hello-%d" % i for i in range(4)]
        assert msgs[0]["properties"] == {"n": "0"} and msgs[0]["key"] == "pk"
        assert msgs[0]["redeliveryCount"] == 0 and msgs[0]["publishTime"].endswith("Z")
        # Individual acks commit below the lowest one not acknowledged.
        ws.send(json.dumps({"messageId": msgs[0]["messageId"]}))
        ws.send(json.dumps({"messageId": msgs[2]["messageId"]}))
        ws.send(json.dumps({"type": "isEndOfTopic"}))
        assert frames(ws) == {"endOfTopic": False}

        def committed():
            r = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("subs")])["subs"].result()
            return [tp.offset for tp in r.topic_partitions]

        wait_for(lambda: committed() == [1], "the first ack to commit", 30)
        ws.send(json.dumps({"messageId": msgs[1]["messageId"]}))
        wait_for(lambda: committed() == [3], "acks 0-2 to commit", 30)

    # A reader in push mode: receiverQueueSize is the window, acks refill it.
    url = f"{base}/reader/persistent/public/default/pulsar?messageId=earliest&receiverQueueSize=2"
    with connect(url) as ws:
        first = [frames(ws) for _ in range(2)]
        assert quiet(ws)
        ws.send(json.dumps({"messageId": first[0]["messageId"]}))
        third = frames(ws)
        assert base64.b64decode(third["payload"]) == b"hello-2"

    # Other tenants do not map to Kafka topics; Shared subscriptions are refused.
    for bad in [f"{base}/consumer/persistent/acme/default/pulsar/s",
                f"{base}/consumer/persistent/public/default/pulsar/s?subscriptionType=Shared"]:
        with pytest.raises(Exception):
            with connect(bad):
                pass


def test_sse_tail(gw):
    create_topic(gw, "tail", 2)
    fill(gw, "tail", 3, partition=1)
    r = requests.get(f"{gw.url}/v1/topics/tail/sse?offset=earliest", stream=True, timeout=30,
                     headers={"Accept": "text/event-stream"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    events = []
    current = {}
    lines = r.iter_lines(decode_unicode=True)
    p = Producer({"bootstrap.servers": gw.bootstrap})
    produced = False
    for line in lines:
        if line == "":
            if current.get("event") == "record":
                events.append(current)
            current = {}
            if len(events) == 3 and not produced:
                p.produce("tail", value=b"live", partition=0)
                p.flush(30)
                produced = True
            if len(events) == 4:
                break
        elif not line.startswith(":"):
            k, _, v = line.partition(": ")
            current[k] = v
    r.close()
    data = [json.loads(e["data"]) for e in events]
    assert [d["value"] for d in data[:3]] == [(b"%d-" % i).ljust(100, b"x").decode() for i in range(3)]
    assert data[3]["value"] == "live" and data[3]["partition"] == 0
    assert events[3]["id"] == "0:0,1:2"
    # Resuming after the third event: only what came later.
    r = requests.get(f"{gw.url}/v1/topics/tail/sse?offset=earliest", stream=True, timeout=30,
                     headers={"Last-Event-ID": events[2]["id"]})
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            assert json.loads(line[6:])["value"] == "live"
            break
    r.close()


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_small_credit_reads_compressed_batches_in_parts(gw, codec):
    create_topic(gw, "packed", 1)
    p = Producer({"bootstrap.servers": gw.bootstrap, "compression.type": codec, "linger.ms": 200,
                  "batch.num.messages": 10000})
    for i in range(600):
        p.produce("packed", value=b"rec-%d" % i, partition=0)
    assert p.flush(60) == 0
    got = []
    with connect(f"{gw.ws}/v1/ws/consume?topic=packed&offset=earliest&format=string") as ws:
        while len(got) < 600:
            ws.send(json.dumps({"type": "credit", "records": 7}))
            want = min(len(got) + 7, 600)
            while len(got) < want:
                got += frames(ws)["records"]
            assert len(got) == want
    assert [r["offset"] for r in got] == list(range(600))
    assert [r["value"] for r in got] == ["rec-%d" % i for i in range(600)]
