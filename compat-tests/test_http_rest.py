"""The REST Proxy v2 API of Sluice's HTTP gateway (`--http-listen`), driven
with a stock HTTP client (requests) the way REST Proxy's documentation and
scripts use it: produce and consume in the binary and JSON embedded formats,
long polls, consumer instances that share a group with librdkafka, commits
across a restart, instance expiry, REST Proxy's error codes, HTTP Basic
authentication and ACLs.
"""

import base64
import json
import subprocess
import threading
import time

import pytest
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from conftest import BIN, Broker, free_port
from test_groups import Worker, wait_for

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
JSON = "application/vnd.kafka.json.v2+json"


def b64(b):
    return base64.b64encode(b).decode()


def start_gateway(data, extra=(), listeners=None):
    b = Broker(data)
    b.http_port = free_port()
    b.extra_args += ["--http-listen", f"127.0.0.1:{b.http_port}", *extra]
    if listeners:
        b.extra_args += listeners(b)
    b.start()
    b.url = f"http://127.0.0.1:{b.http_port}"
    wait_for(lambda: _up(b.url), "the HTTP gateway", 30)
    return b


def _up(url):
    try:
        return requests.get(url + "/", timeout=2).status_code in (200, 401)
    except requests.ConnectionError:
        return False


@pytest.fixture
def gw(tmp_path):
    b = start_gateway(tmp_path / "data")
    yield b
    b.stop()


def create_topic(b, name, partitions=1):
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)


def produce(b, topic, records, fmt=BINARY, partition=None, **kw):
    path = f"/topics/{topic}" + (f"/partitions/{partition}" if partition is not None else "")
    return requests.post(b.url + path, headers={"Content-Type": fmt},
                         data=json.dumps({"records": records}), timeout=30, **kw)


class Rest:
    """A REST Proxy consumer instance, used through its base_uri."""

    def __init__(self, b, group, fmt="binary", **config):
        body = {"format": fmt, "auto.offset.reset": "earliest", **config}
        r = requests.post(f"{b.url}/consumers/{group}", headers={"Content-Type": V2},
                          data=json.dumps(body), timeout=30)
        assert r.status_code == 200, r.text
        self.info = r.json()
        self.uri = self.info["base_uri"]
        self.accept = BINARY if fmt == "binary" else JSON

    def post(self, path, body=None):
        data = None if body is None else json.dumps(body)
        return requests.post(self.uri + path, headers={"Content-Type": V2}, data=data, timeout=30)

    def subscribe(self, *topics):
        r = self.post("/subscription", {"topics": list(topics)})
        assert r.status_code == 204, r.text

    def records(self, timeout_ms=1000, **params):
        r = requests.get(self.uri + "/records", params={"timeout": timeout_ms, **params},
                         headers={"Accept": self.accept}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith(self.accept)
        return r.json()

    def assignment(self):
        r = requests.get(self.uri + "/assignments", timeout=30)
        assert r.status_code == 200, r.text
        return {(p["topic"], p["partition"]) for p in r.json()["partitions"]}

    def committed(self, partitions):
        r = requests.get(self.uri + "/offsets", headers={"Content-Type": V2},
                         data=json.dumps({"partitions": partitions}), timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["offsets"]

    def close(self):
        return requests.delete(self.uri, timeout=30)


def read_all(inst, want, rounds=60):
    got = []
    for _ in range(rounds):
        got += inst.records()
        if len(got) >= want:
            break
    return got


def test_binary_round_trip_with_kafka_partitioning(gw):
    create_topic(gw, "bin", 3)
    recs = [{"key": b64(b"key-%d" % i), "value": b64(b"value-%d" % i)} for i in range(12)]
    recs.append({"value": None})  # a tombstone without a key
    r = produce(gw, "bin", recs)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key_schema_id"] is None and body["value_schema_id"] is None
    offsets = body["offsets"]
    assert all(o["error_code"] is None and o["error"] is None for o in offsets)

    # Keyed records land where librdkafka's murmur2 partitioner (the Java
    # client's default) puts the same keys.
    p = Producer({"bootstrap.servers": gw.bootstrap, "partitioner": "murmur2_random"})
    placed = {}
    for i in range(12):
        p.produce("bin", key=b"key-%d" % i, value=b"x",
                  on_delivery=lambda err, m, i=i: placed.__setitem__(i, m.partition()))
    p.flush(30)
    assert [offsets[i]["partition"] for i in range(12)] == [placed[i] for i in range(12)]

    inst = Rest(gw, "bin-readers")
    inst.subscribe("bin")
    got = [g for g in read_all(inst, 25) if g["value"] is None or not g["value"].startswith(b64(b"x"))]
    want = {(o["partition"], o["offset"]) for o in offsets}
    assert {(g["partition"], g["offset"]) for g in got} == want
    for g in got:
        assert list(g) == ["topic", "key", "value", "partition", "offset"]
        assert g["topic"] == "bin"
    by_offset = {(o["partition"], o["offset"]): i for i, o in enumerate(offsets)}
    for g in got:
        i = by_offset[(g["partition"], g["offset"])]
        assert g["key"] == recs[i].get("key") and g["value"] == recs[i]["value"]
    assert inst.close().status_code == 204


def test_json_round_trip_keeps_the_bytes(gw):
    create_topic(gw, "js", 1)
    values = [{"z": 1, "a": {"nested": [1, 2.5, None]}}, "text", 42, None, [True, False]]
    r = produce(gw, "js", [{"key": "k", "value": v} for v in values], fmt=JSON)
    assert r.status_code == 200, r.text

    # A Kafka consumer sees compact JSON with the client's key order.
    c = Consumer({"bootstrap.servers": gw.bootstrap, "group.id": "raw", "auto.offset.reset": "earliest"})
    c.subscribe(["js"])
    raw = []
    deadline = time.time() + 30
    while len(raw) < len(values) and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            raw.append(m.value())
    c.close()
    assert raw[0] == b'{"z":1,"a":{"nested":[1,2.5,null]}}'
    assert raw[1] == b'"text"' and raw[3] is None

    inst = Rest(gw, "json-readers", fmt="json")
    inst.subscribe("js")
    got = read_all(inst, len(values))
    assert [g["value"] for g in got] == values
    assert all(g["key"] == "k" for g in got)

    # A JSON consumer meeting bytes that are not JSON: REST Proxy's 40801.
    p = Producer({"bootstrap.servers": gw.bootstrap})
    p.produce("js", value=b"\xffnot json")
    p.flush(30)
    r = requests.get(inst.uri + "/records", params={"timeout": 5000}, headers={"Accept": JSON}, timeout=60)
    assert r.status_code == 408 and r.json()["error_code"] == 40801
    # Asking a JSON instance for binary records: 40601.
    r = requests.get(inst.uri + "/records", headers={"Accept": BINARY}, timeout=30)
    assert r.status_code == 406 and r.json()["error_code"] == 40601


def test_long_poll_returns_when_a_record_arrives(gw):
    create_topic(gw, "lp", 2)
    inst = Rest(gw, "lp-readers", **{"auto.offset.reset": "latest"})
    inst.subscribe("lp")
    assert inst.assignment() == {("lp", 0), ("lp", 1)}
    assert inst.records(timeout_ms=200) == []
    out = {}

    def poll():
        start = time.monotonic()
        out["records"] = inst.records(timeout_ms=25000)
        out["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(1.0)  # let the request park
    p = Producer({"bootstrap.servers": gw.bootstrap})
    p.produce("lp", value=b"wake up", partition=1)
    p.flush(30)
    t.join(60)
    assert [r["value"] for r in out["records"]] == [b64(b"wake up")]
    # Woken by the append, not by its 25 s deadline.
    assert out["elapsed"] < 20, out


def test_rest_and_librdkafka_consumers_share_a_group(gw):
    create_topic(gw, "shared", 4)
    w = Worker("confluent-kafka", gw.bootstrap, "shared", "mixed")
    try:
        wait_for(lambda: w.assignment() == {0, 1, 2, 3}, "librdkafka owning every partition")
        inst = Rest(gw, "mixed")
        inst.subscribe("shared")

        def split():
            inst.records(timeout_ms=100)  # a REST client keeps polling
            rest = {p for _, p in inst.assignment()}
            mine = w.assignment()
            return rest and mine and not rest & mine and rest | mine == {0, 1, 2, 3}

        wait_for(split, "the REST and librdkafka members splitting the partitions", 90)
        rest_parts = {p for _, p in inst.assignment()}
        p = Producer({"bootstrap.servers": gw.bootstrap})
        for i in range(40):
            p.produce("shared", value=b"m%d" % i, partition=i % 4)
        p.flush(30)
        got = read_all(inst, 10 * len(rest_parts))
        assert {g["partition"] for g in got} == rest_parts
        assert len(got) == 10 * len(rest_parts)
        wait_for(lambda: len(w.consumed()) >= 10 * (4 - len(rest_parts)), "librdkafka consuming its share")
        assert {pp for pp, _ in w.consumed()} == {0, 1, 2, 3} - rest_parts
        # Deleting the instance leaves the group: librdkafka takes everything back.
        assert inst.close().status_code == 204
        wait_for(lambda: w.assignment() == {0, 1, 2, 3}, "librdkafka taking the partitions back", 90)
    finally:
        w.term()


def test_commits_survive_a_restart(gw):
    create_topic(gw, "durable", 1)
    assert produce(gw, "durable", [{"value": b64(b"r%d" % i)} for i in range(5)]).status_code == 200
    inst = Rest(gw, "keepers", **{"auto.commit.enable": "false"})
    inst.subscribe("durable")
    got = read_all(inst, 5)
    assert [g["offset"] for g in got] == [0, 1, 2, 3, 4]
    # REST Proxy's convention: the client names the last record it processed.
    r = inst.post("/offsets", {"offsets": [{"topic": "durable", "partition": 0, "offset": 2}]})
    assert r.status_code == 200 and r.json() == []
    assert inst.committed([{"topic": "durable", "partition": 0}]) == [
        {"topic": "durable", "partition": 0, "offset": 3, "metadata": ""}]
    # A commit without a body commits the positions: after offset 4.
    assert inst.post("/offsets").status_code == 200
    assert inst.committed([{"topic": "durable", "partition": 0}])[0]["offset"] == 5

    gw.restart()
    wait_for(lambda: _up(gw.url), "the HTTP gateway after the restart", 30)
    # The instance did not survive (REST Proxy's instances do not either).
    assert requests.get(inst.uri + "/subscription", timeout=30).json()["error_code"] == 40403
    again = Rest(gw, "keepers")
    assert again.committed([{"topic": "durable", "partition": 0}])[0]["offset"] == 5
    assert produce(gw, "durable", [{"value": b64(b"after")}]).status_code == 200
    again.subscribe("durable")
    assert [g["offset"] for g in read_all(again, 1)] == [5]


def test_expired_instances_are_gone(tmp_path):
    b = start_gateway(tmp_path / "data", ["--http-consumer-instance-timeout-ms", "1500"])
    try:
        create_topic(b, "exp", 1)
        inst = Rest(b, "expiring")
        inst.subscribe("exp")

        # Watched from outside (a call on the instance would keep it alive):
        # expiring means leaving its group, which empties.
        a = AdminClient({"bootstrap.servers": b.bootstrap})

        def members():
            return a.describe_consumer_groups(["expiring"])["expiring"].result(timeout=30).members

        wait_for(lambda: members(), "the instance joining its group", 30)
        wait_for(lambda: not members(), "the idle instance to expire and leave its group", 30)
        r = requests.get(inst.uri + "/subscription", timeout=30)
        assert r.status_code == 404
        assert r.json() == {"error_code": 40403, "message": "Consumer instance not found."}
    finally:
        b.stop()


def test_manual_assignment_and_positions(gw):
    create_topic(gw, "manual", 2)
    assert produce(gw, "manual", [{"value": b64(b"v%d" % i)} for i in range(6)], partition=1).status_code == 200
    inst = Rest(gw, "manual-readers")
    assert inst.post("/assignments", {"partitions": [{"topic": "manual", "partition": 1}]}).status_code == 204
    assert inst.assignment() == {("manual", 1)}
    r = inst.post("/subscription", {"topics": ["manual"]})
    assert r.status_code == 409 and r.json()["error_code"] == 40903
    assert inst.post("/positions", {"offsets": [{"topic": "manual", "partition": 1, "offset": 4}]}).status_code == 204
    assert [g["offset"] for g in read_all(inst, 2)] == [4, 5]
    assert inst.post("/positions/beginning", {"partitions": [{"topic": "manual", "partition": 1}]}).status_code == 204
    assert [g["offset"] for g in read_all(inst, 6)] == [0, 1, 2, 3, 4, 5]
    assert inst.post("/positions/end", {"partitions": [{"topic": "manual", "partition": 1}]}).status_code == 204
    assert inst.records(timeout_ms=100) == []
    r = inst.post("/positions", {"offsets": [{"topic": "manual", "partition": 0, "offset": 0}]})
    assert r.status_code == 409 and r.json()["error_code"] == 40903
    # max_bytes bounds a response, yet one record always comes back.
    assert inst.post("/positions/beginning", {"partitions": [{"topic": "manual", "partition": 1}]}).status_code == 204
    assert len(inst.records(max_bytes=1)) == 1
    # Seeking to a time: the first record at or after it (2023-11-14T22:13:20Z + i s).
    p = Producer({"bootstrap.servers": gw.bootstrap})
    for i in range(3):
        p.produce("manual", value=b"t%d" % i, partition=0, timestamp=1_700_000_000_000 + i * 1000)
    p.flush(30)
    assert inst.post("/assignments", {"partitions": [{"topic": "manual", "partition": 0}]}).status_code == 204
    r = inst.post("/positions", {"timestamps": [{"topic": "manual", "partition": 0,
                                                 "timestamp": "2023-11-14T22:13:20.500Z"}]})
    assert r.status_code == 204, r.text
    assert [g["offset"] for g in read_all(inst, 2)] == [1, 2]
    r = inst.post("/positions", {"timestamps": [{"topic": "manual", "partition": 0, "timestamp": "yesterday"}]})
    assert r.status_code == 422


def test_metadata_and_error_codes(gw):
    create_topic(gw, "meta", 2)
    assert requests.get(gw.url + "/", timeout=30).json() == {}
    assert requests.get(gw.url + "/brokers", timeout=30).json() == {"brokers": [1]}
    assert "meta" in requests.get(gw.url + "/topics", timeout=30).json()
    t = requests.get(gw.url + "/topics/meta", timeout=30).json()
    assert t["name"] == "meta" and [p["partition"] for p in t["partitions"]] == [0, 1]
    assert t["partitions"][0]["replicas"] == [{"broker": 1, "leader": True, "in_sync": True}]
    assert requests.get(gw.url + "/topics/meta/partitions/1", timeout=30).json()["leader"] == 1
    assert produce(gw, "meta", [{"value": b64(b"x")}], partition=1).json()["offsets"][0]["partition"] == 1
    assert requests.get(gw.url + "/topics/meta/partitions/1/offsets", timeout=30).json() == {
        "beginning_offset": 0, "end_offset": 1}
    # A trailing slash is the same path (as REST Proxy's JAX-RS).
    assert requests.get(gw.url + "/topics/meta/", timeout=30).json()["name"] == "meta"

    def err(r, status, code):
        assert r.status_code == status, r.text
        assert r.json()["error_code"] == code, r.text
        assert r.headers["Content-Type"].startswith(V2)

    err(requests.get(gw.url + "/topics/nope", timeout=30), 404, 40401)
    err(requests.get(gw.url + "/topics/meta/partitions/7", timeout=30), 404, 40402)
    err(requests.get(gw.url + "/nothing/here", timeout=30), 404, 404)
    err(requests.get(gw.url + "/consumers/g/instances/nobody/assignments", timeout=30), 404, 40403)
    err(produce(gw, "meta", []), 422, 422)
    err(produce(gw, "meta", [{"value": "not base64!"}]), 400, 400)
    err(produce(gw, "meta", [{"value": 3}]), 400, 400)
    err(produce(gw, "meta", [{"value": "eA=="}], partition=9), 404, 40402)
    err(requests.post(gw.url + "/topics/meta", data="records=1", timeout=30,
                      headers={"Content-Type": "application/x-www-form-urlencoded"}), 415, 415)
    err(produce(gw, "meta", [{"value": "eA=="}], fmt="application/vnd.kafka.avro.v2+json"), 415, 415)
    err(requests.post(gw.url + "/topics/meta", data="{not json", headers={"Content-Type": BINARY},
                      timeout=30), 400, 400)
    err(requests.delete(gw.url + "/topics/meta", timeout=30), 405, 405)
    err(requests.post(f"{gw.url}/consumers/g", headers={"Content-Type": V2},
                      data=json.dumps({"format": "avro"}), timeout=30), 422, 42204)
    err(requests.post(f"{gw.url}/consumers/g", headers={"Content-Type": V2},
                      data=json.dumps({"format": "xml"}), timeout=30), 422, 422)
    Rest(gw, "g", name="twin")
    err(requests.post(f"{gw.url}/consumers/g", headers={"Content-Type": V2},
                      data=json.dumps({"name": "twin"}), timeout=30), 409, 40902)


USERS = {"admin": "admin-pw", "alice": "alice-pw"}


def test_basic_auth_and_acls(tmp_path):
    data = tmp_path / "data"
    for user, pw in USERS.items():
        r = subprocess.run([BIN, "scram-users", "--data-dir", str(data), "add", user],
                           input=f"{pw}\n".encode(), capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr

    def listeners(b):
        b.sasl_port = free_port()
        return ["--listeners", f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{b.sasl_port}",
                "--authorizer", "acl", "--super-users", "User:admin"]

    b = start_gateway(data, ["--http-auth", "basic"], listeners)
    try:
        r = requests.get(b.url + "/topics", timeout=30)
        assert r.status_code == 401 and r.json()["error_code"] == 40101
        assert "Basic" in r.headers["WWW-Authenticate"]
        r = requests.get(b.url + "/topics", auth=("alice", "wrong"), timeout=30)
        assert r.status_code == 401 and r.json()["error_code"] == 40101
        admin = ("admin", USERS["admin"])
        alice = ("alice", USERS["alice"])
        assert produce(b, "secret", [{"value": b64(b"s")}], auth=admin).status_code == 200
        # alice has no ACL: the topic is invisible and her records are refused.
        assert requests.get(b.url + "/topics", auth=alice, timeout=30).json() == []
        r = produce(b, "secret", [{"value": b64(b"s")}], auth=alice)
        assert r.status_code == 403 and r.json()["offsets"][0]["error_code"] == 40301
        # Granted WRITE on the topic (with a stock admin client), she may produce.
        a = AdminClient({"bootstrap.servers": f"127.0.0.1:{b.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin",
                         "sasl.password": USERS["admin"]})
        binding = AclBinding(ResourceType.TOPIC, "secret", ResourcePatternType.LITERAL, "User:alice", "*",
                             AclOperation.WRITE, AclPermissionType.ALLOW)
        for f in a.create_acls([binding]).values():
            f.result(timeout=30)
        wait_for(lambda: produce(b, "secret", [{"value": b64(b"s")}], auth=alice).status_code == 200,
                 "alice's WRITE ACL to apply", 30)
        # Reading needs READ on the group: refused without it.
        r = requests.post(f"{b.url}/consumers/readers", headers={"Content-Type": V2}, data="{}",
                          auth=alice, timeout=30)
        assert r.status_code == 403 and r.json()["error_code"] == 40301
        # An instance belongs to its creator only.
        r = requests.post(f"{b.url}/consumers/admins", headers={"Content-Type": V2}, data="{}",
                          auth=admin, timeout=30)
        uri = r.json()["base_uri"]
        assert requests.get(uri + "/subscription", auth=admin, timeout=30).status_code == 200
        assert requests.get(uri + "/subscription", auth=alice, timeout=30).json()["error_code"] == 40403
    finally:
        b.stop()


def test_https_and_bearer_tokens(tmp_path):
    from certs import make_certs
    from test_oauth import unsecured

    certs = make_certs(tmp_path / "certs")
    b = Broker(tmp_path / "data")
    b.http_port = free_port()
    b.extra_args += ["--http-listen", f"127.0.0.1:{b.http_port}", "--http-tls", "--http-auth", "bearer",
                     "--ssl-keystore-location", str(certs.keystore)]
    b.start()
    url = f"https://127.0.0.1:{b.http_port}"
    try:
        def up():
            try:
                return requests.get(url + "/", verify=str(certs.ca), timeout=2).status_code == 401
            except requests.ConnectionError:
                return False

        wait_for(up, "the HTTPS gateway", 30)
        bearer = {"Authorization": "Bearer " + unsecured("alice")}
        r = requests.get(url + "/topics", headers=bearer, verify=str(certs.ca), timeout=30)
        assert r.status_code == 200 and r.json() == []
        r = requests.get(url + "/topics", headers={"Authorization": "Bearer not-a-jwt"},
                         verify=str(certs.ca), timeout=30)
        assert r.status_code == 401 and r.json()["error_code"] == 40101
        # Basic is not accepted when only bearer is configured.
        r = requests.get(url + "/topics", auth=("alice", "pw"), verify=str(certs.ca), timeout=30)
        assert r.status_code == 401
        # base_uri carries the scheme the client used.
        r = requests.post(url + "/consumers/g", headers={**bearer, "Content-Type": V2}, data="{}",
                          verify=str(certs.ca), timeout=30)
        assert r.json()["base_uri"].startswith(f"https://127.0.0.1:{b.http_port}/consumers/g/instances/")
    finally:
        b.stop()


def test_cross_site_requests_are_refused(tmp_path):
    b = start_gateway(tmp_path / "data", ["--http-allowed-origins", "https://app.example"])
    try:
        create_topic(b, "xs", 1)
        body = json.dumps({"records": [{"value": b64(b"x")}]})
        hdr = {"Content-Type": BINARY}

        def post(**extra):
            return requests.post(b.url + "/topics/xs", data=body, headers={**hdr, **extra}, timeout=30)

        # A page of another site: refused, whether it says so with Origin or
        # with Sec-Fetch-Site (no-cors requests carry no Origin).
        r = post(Origin="http://evil.example")
        assert r.status_code == 403 and r.json()["error_code"] == 40301
        assert post(**{"Sec-Fetch-Site": "cross-site"}).status_code == 403
        # A name rebound to this loopback listener is not this gateway.
        r = requests.get(b.url + "/topics", headers={"Host": f"evil.example:{b.http_port}"}, timeout=30)
        assert r.status_code == 403
        # The gateway's own pages, listed origins and non-browser clients pass.
        assert post(Origin=b.url).status_code == 200
        assert post(Origin="https://app.example").status_code == 200
        assert post().status_code == 200
        # A body must say what it is (a no-cors request cannot set JSON types).
        r = requests.post(b.url + "/topics/xs", data=body, timeout=30)
        assert r.status_code == 415
        # WebSocket upgrades from another origin are refused before the upgrade.
        from websockets.sync.client import connect
        ws_url = b.url.replace("http://", "ws://") + "/v1/ws/consume?topic=xs"
        with pytest.raises(Exception):
            with connect(ws_url, origin="http://evil.example"):
                pass
        with connect(ws_url, origin=b.url) as ws:
            ws.send(json.dumps({"type": "credit", "records": 1}))
    finally:
        b.stop()


def test_a_large_request_of_small_records_is_split(gw):
    create_topic(gw, "big", 1)
    recs = [{"value": b64(b"v" * 900)} for _ in range(4000)]  # ~4.8 MB of JSON, 3.6 MB of values
    r = produce(gw, "big", recs)
    assert r.status_code == 200, r.text[:200]
    offsets = [o["offset"] for o in r.json()["offsets"]]
    assert offsets == list(range(4000))


def test_instance_limits(tmp_path):
    b = start_gateway(tmp_path / "data", ["--http-consumer-instances-per-principal-max", "2"])
    try:
        a, c = Rest(b, "g1"), Rest(b, "g2")
        r = requests.post(f"{b.url}/consumers/g3", headers={"Content-Type": V2}, data="{}", timeout=30)
        assert r.status_code == 429 and r.json()["error_code"] == 429
        assert a.close().status_code == 204
        Rest(b, "g3")
        assert c.close().status_code == 204
    finally:
        b.stop()
