"""SASL_PLAINTEXT with stock clients: SCRAM users created with the admin API
on the PLAINTEXT listener log in on the SASL listener with PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512, produce and consume; Metadata hands each
client the listener it came through; a wrong password or an unknown user is
refused with the errors clients expect; sessions expire and clients
re-authenticate (KIP-368); an address with too many failures is refused."""

import asyncio
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from conftest import Broker, free_port, scrape, value

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def sasl_broker(tmp_path, extra=()):
    b = Broker(tmp_path / "data")
    b.sasl_port = free_port()
    b.extra_args += [
        "--listeners",
        f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{b.sasl_port}",
        *extra,
    ]
    b.start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"alice-pw"),
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"bob-pw"),
    ]).values():
        f.result()
    for f in admin.create_topics([NewTopic("secure", 1, 1)]).values():
        f.result()
    return b


@pytest.fixture
def sbroker(tmp_path):
    b = sasl_broker(tmp_path)
    yield b
    b.stop()


def user_for(mechanism):
    return ("bob", "bob-pw") if mechanism == "SCRAM-SHA-512" else ("alice", "alice-pw")


def sasl_conf(b, mechanism, user, password):
    return {
        "bootstrap.servers": f"127.0.0.1:{b.sasl_port}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_produces_and_consumes_over_sasl(sbroker, mechanism):
    user, pw = user_for(mechanism)
    conf = sasl_conf(sbroker, mechanism, user, pw)
    p = Producer(conf)
    values = [f"{mechanism}-{i}".encode() for i in range(10)]
    errors = []
    for v in values:
        p.produce("secure", value=v, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert errors == [None] * 10, errors
    md = p.list_topics(timeout=10)
    # The broker is advertised on the SASL listener to a client that came through it.
    assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", sbroker.sasl_port)]
    c = Consumer({**conf, "group.id": f"g-{mechanism}", "auto.offset.reset": "earliest"})
    c.subscribe(["secure"])
    got, deadline = [], time.time() + 30
    while time.time() < deadline and not set(values) <= set(got):
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert set(values) <= set(got)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_wrong_password_and_unknown_user_are_refused(sbroker, mechanism):
    for user, pw in [(user_for(mechanism)[0], "wrong"), ("nobody", "x")]:
        errors = []
        p = Producer({**sasl_conf(sbroker, mechanism, user, pw), "error_cb": errors.append})
        with pytest.raises(KafkaException):
            p.list_topics(timeout=5)
        p.poll(1)
        assert any(e.code() == -169 for e in errors), errors  # _AUTHENTICATION


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_and_aiokafka_over_sasl(sbroker, mechanism):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    user, pw = user_for(mechanism)
    kw = dict(
        bootstrap_servers=f"127.0.0.1:{sbroker.sasl_port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_plain_username=user,
        sasl_plain_password=pw,
    )
    p = KafkaProducer(**kw)
    for i in range(5):
        p.send("secure", f"kp-{mechanism}-{i}".encode()).get(timeout=30)
    p.close()
    c = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=3000, **kw)
    c.assign([KTP("secure", 0)])
    got = [m.value for m in c]
    c.close()
    assert {f"kp-{mechanism}-{i}".encode() for i in range(5)} <= set(got)

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    akw = dict(kw)
    async def run():
        ap = AIOKafkaProducer(**akw)
        await ap.start()
        try:
            await ap.send_and_wait("secure", f"aio-{mechanism}".encode())
        finally:
            await ap.stop()
        ac = AIOKafkaConsumer("secure", auto_offset_reset="earliest", **akw)
        await ac.start()
        try:
            seen, deadline = [], time.time() + 30
            while time.time() < deadline and f"aio-{mechanism}".encode() not in seen:
                batch = await ac.getmany(timeout_ms=500)
                for msgs in batch.values():
                    seen += [m.value for m in msgs]
            return seen
        finally:
            await ac.stop()

    assert f"aio-{mechanism}".encode() in asyncio.run(run())


def test_kcat_and_plaintext_clients_on_the_sasl_port(sbroker):
    out = subprocess.run(
        ["kcat", "-b", f"127.0.0.1:{sbroker.sasl_port}", "-X", "security.protocol=SASL_PLAINTEXT",
         "-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=alice", "-X", "sasl.password=alice-pw",
         "-L", "-J"],
        capture_output=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert str(sbroker.sasl_port).encode() in out.stdout
    # A client that skips authentication gets nothing: the connection closes.
    c = Producer({"bootstrap.servers": f"127.0.0.1:{sbroker.sasl_port}"})
    with pytest.raises(KafkaException):
        c.list_topics(timeout=3)


@pytest.mark.parametrize("mechanism", ["plain", "scram-sha-256", "scram-sha-512"])
def test_kafkajs_over_sasl(sbroker, mechanism):
    import json
    import pathlib
    import shutil

    node = shutil.which("node")
    here = pathlib.Path(__file__).resolve().parent
    assert node and (here / "node_modules" / "kafkajs").exists(), "run-all.sh installs kafkajs"
    user, pw = user_for(mechanism.upper())

    def run(password):
        r = subprocess.run(
            [node, str(here / "workers" / "kafkajs_secure.js"), f"127.0.0.1:{sbroker.sasl_port}",
             "secure", mechanism, user, password, "5"],
            capture_output=True, timeout=120,
        )
        lines = [json.loads(x) for x in r.stdout.decode().splitlines() if x.strip()]
        return r.returncode, lines

    code, lines = run(pw)
    assert code == 0 and lines[-1] == {"ev": "done", "read": 5}, lines
    code, lines = run("wrong")
    assert code != 0 and lines[-1]["ev"] == "error", lines
    assert "SASL" in lines[-1]["error"] or "Authentication" in lines[-1]["error"], lines


LIFETIME_MS = 2500


def counter(b, name, **labels):
    return value(scrape(b), name, **labels) or 0


def test_clients_reauthenticate_before_their_session_expires(tmp_path):
    """librdkafka and kafka-python renew their sessions on the same connection
    (KIP-368), so producing across several lifetimes loses nothing and no
    connection is closed for an expired session."""
    from kafka import KafkaProducer

    b = sasl_broker(tmp_path, ["--connections-max-reauth-ms", str(LIFETIME_MS)])
    try:
        conf = sasl_conf(b, "SCRAM-SHA-512", "bob", "bob-pw")
        p = Producer(conf)
        kp = KafkaProducer(bootstrap_servers=f"127.0.0.1:{b.sasl_port}",
                           security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                           sasl_plain_username="alice", sasl_plain_password="alice-pw")
        errors, sent = [], 0
        deadline = time.time() + 3 * LIFETIME_MS / 1000
        while time.time() < deadline:
            p.produce("secure", value=b"ck-%d" % sent, on_delivery=lambda e, m: errors.append(e))
            kp.send("secure", b"kp-%d" % sent).get(timeout=30)
            sent += 1
            p.poll(0.1)
        assert p.flush(30) == 0
        kp.close()
        assert errors == [None] * sent, [e for e in errors if e][:3]
        assert counter(b, "sluice_connections_closed_total", reason="session_expired") == 0
        # Each client connection authenticated more than once.
        assert counter(b, "sluice_requests_total", api="SaslAuthenticate", version="1") >= 4
        assert counter(b, "sluice_request_errors_total", api="SaslAuthenticate",
                       error="SASL_AUTHENTICATION_FAILED") == 0
    finally:
        b.stop()


def test_a_client_that_never_reauthenticates_is_disconnected_and_reconnects(tmp_path):
    """aiokafka ignores the session lifetime: its expired connections are
    closed at their next request, and it reconnects without losing a record."""
    from aiokafka import AIOKafkaProducer

    b = sasl_broker(tmp_path, ["--connections-max-reauth-ms", str(LIFETIME_MS)])
    try:
        async def run():
            ap = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{b.sasl_port}",
                                  security_protocol="SASL_PLAINTEXT",
                                  sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice",
                                  sasl_plain_password="alice-pw")
            await ap.start()
            try:
                n = 0
                deadline = time.time() + 2.5 * LIFETIME_MS / 1000
                while time.time() < deadline:
                    await ap.send_and_wait("secure", b"aio-%d" % n)
                    n += 1
                    await asyncio.sleep(0.2)
                return n
            finally:
                await ap.stop()

        sent = asyncio.run(run())
        assert counter(b, "sluice_connections_closed_total", reason="session_expired") >= 1
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "reader",
                      "auto.offset.reset": "earliest"})
        c.subscribe(["secure"])
        got, deadline = set(), time.time() + 30
        while time.time() < deadline and len(got) < sent:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.add(m.value())
        c.close()
        assert got == {b"aio-%d" % i for i in range(sent)}
    finally:
        b.stop()


def test_an_address_with_too_many_failures_is_refused_for_a_while(tmp_path):
    import gc

    window_s = 6
    b = sasl_broker(tmp_path, ["--auth-failures-per-ip-max", "3",
                               "--auth-failures-window-ms", str(window_s * 1000)])
    try:
        t0 = time.time()
        for _ in range(3):
            refused = Producer(sasl_conf(b, "PLAIN", "alice", "wrong"))
            with pytest.raises(KafkaException):
                refused.list_topics(timeout=0.5)
            del refused  # destroyed now: no retries in the background
            gc.collect()
        # The right password is refused too while the address is blocked ...
        errors = []
        p = Producer({**sasl_conf(b, "SCRAM-SHA-256", "alice", "alice-pw"),
                      "error_cb": errors.append})
        with pytest.raises(KafkaException):
            p.list_topics(timeout=1)
        p.poll(0.2)
        del p
        gc.collect()
        assert time.time() - t0 < window_s, "too slow to test the window"
        assert any(e.code() == -169 and "too many failed authentications" in e.str()
                   for e in errors), errors
        assert "alice-pw" not in b.log_path.read_text()
        # ... and accepted once the window has passed.
        time.sleep(max(0.0, t0 + window_s + 0.5 - time.time()))
        ok = Producer(sasl_conf(b, "SCRAM-SHA-256", "alice", "alice-pw"))
        assert ok.list_topics(timeout=10).brokers
    finally:
        b.stop()
