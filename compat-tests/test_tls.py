"""TLS listeners with stock clients: SSL (with and without a client
certificate) and SASL_SSL with PLAIN and SCRAM-SHA-256/512; confluent-kafka,
kafka-python, aiokafka, kafkajs and kcat produce and consume; an untrusted
client certificate, a missing one where one is required, and a wrong password
are refused; a rotated certificate is served without a restart; a fetch far
larger than the TLS path's read chunk comes back intact."""

import asyncio
import json
import pathlib
import shutil
import ssl
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from certs import make_certs
from conftest import Broker, free_port, refused

HERE = pathlib.Path(__file__).resolve().parent
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_broker(tmp_path, certs, client_auth="requested", extra=()):
    b = Broker(tmp_path / "data")
    b.ssl_port, b.sasl_ssl_port = free_port(), free_port()
    b.extra_args += [
        "--listeners",
        f"PLAINTEXT://127.0.0.1:{b.port},SSL://127.0.0.1:{b.ssl_port},"
        f"SASL_SSL://127.0.0.1:{b.sasl_ssl_port}",
        "--ssl-keystore-location", str(certs.keystore),
        "--ssl-truststore-location", str(certs.ca),
        "--ssl-client-auth", client_auth,
        *extra,
    ]
    b.start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"alice-pw"),
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"bob-pw"),
    ]).values():
        f.result()
    for f in admin.create_topics([NewTopic("secure", 1, 1)]).values():
        f.result()
    return b


@pytest.fixture
def tbroker(tmp_path, certs):
    b = tls_broker(tmp_path, certs)
    yield b
    b.stop()


def user_for(mechanism):
    return ("bob", "bob-pw") if mechanism.upper() == "SCRAM-SHA-512" else ("alice", "alice-pw")


def ssl_conf(b, certs, client_cert=True):
    conf = {
        "bootstrap.servers": f"127.0.0.1:{b.ssl_port}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs.ca),
    }
    if client_cert:
        conf["ssl.certificate.location"] = str(certs.client_cert)
        conf["ssl.key.location"] = str(certs.client_key)
    return conf


def sasl_ssl_conf(b, certs, mechanism, user, password):
    return {
        "bootstrap.servers": f"127.0.0.1:{b.sasl_ssl_port}",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(certs.ca),
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def round_trip(conf, port, tag, n=10, value_bytes=0):
    """Produces n records through conf, checks Metadata advertises `port`,
    and reads them back with a consumer group."""
    p = Producer(conf)
    pad = b"x" * value_bytes
    values = [f"{tag}-{i}".encode() + pad for i in range(n)]
    errors = []
    for v in values:
        p.produce("secure", value=v, on_delivery=lambda err, msg: errors.append(err))
        p.poll(0)
    assert p.flush(60) == 0
    assert errors == [None] * n, errors[:3]
    md = p.list_topics(timeout=10)
    assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", port)]
    c = Consumer({**conf, "group.id": f"g-{tag}", "auto.offset.reset": "earliest",
                  "fetch.max.bytes": 64 * 1024 * 1024})
    c.subscribe(["secure"])
    want, deadline = set(values), time.time() + 60
    while time.time() < deadline and want:
        m = c.poll(0.5)
        if m is not None and not m.error():
            want.discard(m.value())
    c.close()
    assert not want, f"{len(want)} records not read back"


def test_confluent_kafka_over_ssl_with_and_without_a_client_certificate(tbroker, certs):
    round_trip(ssl_conf(tbroker, certs), tbroker.ssl_port, "ssl-cert")
    round_trip(ssl_conf(tbroker, certs, client_cert=False), tbroker.ssl_port, "ssl-anon")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_over_sasl_ssl(tbroker, certs, mechanism):
    user, pw = user_for(mechanism)
    round_trip(sasl_ssl_conf(tbroker, certs, mechanism, user, pw), tbroker.sasl_ssl_port, mechanism)


def test_a_fetch_much_larger_than_the_read_chunk_comes_back_intact(tbroker, certs):
    # 400 records of 16 KiB: several MB per fetch, through the buffered TLS path.
    round_trip(ssl_conf(tbroker, certs), tbroker.ssl_port, "big", n=400, value_bytes=16 * 1024)


def test_wrong_password_over_sasl_ssl_is_refused(tbroker, certs):
    errors = []
    p = Producer({**sasl_ssl_conf(tbroker, certs, "SCRAM-SHA-256", "alice", "wrong"),
                  "error_cb": errors.append})
    with pytest.raises(KafkaException):
        p.list_topics(timeout=5)
    p.poll(1)
    assert any(e.code() == -169 for e in errors), errors  # _AUTHENTICATION


def test_untrusted_or_missing_client_certificates_are_refused_where_required(tmp_path, certs):
    b = tls_broker(tmp_path, certs, client_auth="required")
    try:
        # librdkafka reports the broker's TLS alert as an SSL (-181) or
        # transport (-195) error.
        untrusted = {**ssl_conf(b, certs, client_cert=False),
                     "ssl.certificate.location": str(certs.untrusted_cert),
                     "ssl.key.location": str(certs.untrusted_key)}
        for conf in (untrusted, ssl_conf(b, certs, client_cert=False)):
            errors = refused(conf)
            assert any(e.code() in (-195, -181) and "alert" in e.str() for e in errors), errors
        round_trip(ssl_conf(b, certs), b.ssl_port, "required")
    finally:
        b.stop()


def test_a_plaintext_client_on_the_ssl_port_gets_nothing(tbroker):
    p = Producer({"bootstrap.servers": f"127.0.0.1:{tbroker.ssl_port}"})
    with pytest.raises(KafkaException):
        p.list_topics(timeout=3)


def test_kafka_python_and_aiokafka_over_ssl_and_sasl_ssl(tbroker, certs):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    variants = {
        "ssl": dict(bootstrap_servers=f"127.0.0.1:{tbroker.ssl_port}", security_protocol="SSL",
                    ssl_cafile=str(certs.ca), ssl_certfile=str(certs.client_cert),
                    ssl_keyfile=str(certs.client_key)),
        "sasl_ssl": dict(bootstrap_servers=f"127.0.0.1:{tbroker.sasl_ssl_port}",
                         security_protocol="SASL_SSL", ssl_cafile=str(certs.ca),
                         sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="bob",
                         sasl_plain_password="bob-pw"),
    }
    for name, kw in variants.items():
        p = KafkaProducer(**kw)
        for i in range(5):
            p.send("secure", f"kp-{name}-{i}".encode()).get(timeout=30)
        p.close()
        c = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=3000, **kw)
        c.assign([KTP("secure", 0)])
        got = [m.value for m in c]
        c.close()
        assert {f"kp-{name}-{i}".encode() for i in range(5)} <= set(got), name

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    async def run(kw, tag):
        ap = AIOKafkaProducer(**kw)
        await ap.start()
        try:
            await ap.send_and_wait("secure", tag)
        finally:
            await ap.stop()
        ac = AIOKafkaConsumer("secure", auto_offset_reset="earliest", **kw)
        await ac.start()
        try:
            seen, deadline = [], time.time() + 30
            while time.time() < deadline and tag not in seen:
                batch = await ac.getmany(timeout_ms=500)
                for msgs in batch.values():
                    seen += [m.value for m in msgs]
            return seen
        finally:
            await ac.stop()

    ctx = create_ssl_context(cafile=str(certs.ca), certfile=str(certs.client_cert),
                             keyfile=str(certs.client_key))
    aio_ssl = dict(bootstrap_servers=f"127.0.0.1:{tbroker.ssl_port}", security_protocol="SSL",
                   ssl_context=ctx)
    assert b"aio-ssl" in asyncio.run(run(aio_ssl, b"aio-ssl"))
    aio_sasl = dict(bootstrap_servers=f"127.0.0.1:{tbroker.sasl_ssl_port}",
                    security_protocol="SASL_SSL", ssl_context=create_ssl_context(cafile=str(certs.ca)),
                    sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice",
                    sasl_plain_password="alice-pw")
    assert b"aio-sasl-ssl" in asyncio.run(run(aio_sasl, b"aio-sasl-ssl"))


@pytest.mark.parametrize("mechanism", ["none", "plain", "scram-sha-512"])
def test_kafkajs_over_ssl_and_sasl_ssl(tbroker, certs, mechanism):
    node = shutil.which("node")
    assert node and (HERE / "node_modules" / "kafkajs").exists(), "run-all.sh installs kafkajs"
    user, pw = user_for(mechanism)
    port = tbroker.ssl_port if mechanism == "none" else tbroker.sasl_ssl_port
    env = {"PATH": "/usr/bin:/bin", "SSL_CA": str(certs.ca)}
    if mechanism == "none":
        env.update(SSL_CERT=str(certs.client_cert), SSL_KEY=str(certs.client_key))
    r = subprocess.run(
        [node, str(HERE / "workers" / "kafkajs_secure.js"), f"127.0.0.1:{port}", "secure",
         mechanism, user, pw, "5"],
        capture_output=True, timeout=120, env=env,
    )
    lines = [json.loads(x) for x in r.stdout.decode().splitlines() if x.strip()]
    assert r.returncode == 0 and lines[-1] == {"ev": "done", "read": 5}, (lines, r.stderr[-2000:])


def test_kcat_over_ssl_and_sasl_ssl(tbroker, certs):
    ssl_args = ["-X", f"ssl.ca.location={certs.ca}"]
    runs = [
        ["-b", f"127.0.0.1:{tbroker.ssl_port}", "-X", "security.protocol=SSL", *ssl_args,
         "-X", f"ssl.certificate.location={certs.client_cert}",
         "-X", f"ssl.key.location={certs.client_key}"],
        ["-b", f"127.0.0.1:{tbroker.sasl_ssl_port}", "-X", "security.protocol=SASL_SSL", *ssl_args,
         "-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=alice",
         "-X", "sasl.password=alice-pw"],
    ]
    for i, base in enumerate(runs):
        value = f"kcat-{i}"
        out = subprocess.run(["kcat", *base, "-P", "-t", "secure"], input=value.encode(),
                             capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        out = subprocess.run(["kcat", *base, "-C", "-t", "secure", "-o", "beginning", "-e", "-q"],
                             capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        assert value in out.stdout.decode().split("\n")


def served_certificate(port):
    """The certificate the broker presents now, as PEM."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s) as t:
            return ssl.DER_cert_to_PEM_cert(t.getpeercert(binary_form=True))


def test_a_rotated_certificate_is_served_without_a_restart(tmp_path, certs):
    keystore = tmp_path / "rotating.pem"
    shutil.copy(certs.keystore, keystore)
    b = Broker(tmp_path / "data")
    b.ssl_port = free_port()
    b.extra_args += [
        "--listeners", f"PLAINTEXT://127.0.0.1:{b.port},SSL://127.0.0.1:{b.ssl_port}",
        "--ssl-keystore-location", str(keystore), "--ssl-reload-interval-ms", "100",
    ]
    b.start()
    try:
        first = served_certificate(b.ssl_port)
        assert first.split() == certs.server_cert.read_text().split()
        # A new certificate from another CA; the file is replaced by a rename, as
        # certificate managers do, and a broken file in between is ignored.
        new = make_certs(tmp_path / "new", server_subject="/CN=rotated")
        keystore.write_text("not a certificate\n")
        time.sleep(0.5)
        assert served_certificate(b.ssl_port) == first, "a broken keystore replaced a good one"
        tmp = tmp_path / "rotating.pem.tmp"
        shutil.copy(new.keystore, tmp)
        tmp.rename(keystore)
        deadline = time.time() + 10
        while time.time() < deadline and served_certificate(b.ssl_port) == first:
            time.sleep(0.1)
        assert served_certificate(b.ssl_port).split() == new.server_cert.read_text().split()
        # Clients trusting the new CA connect.
        conf = {"bootstrap.servers": f"127.0.0.1:{b.ssl_port}", "security.protocol": "SSL",
                "ssl.ca.location": str(new.ca)}
        assert Producer(conf).list_topics(timeout=10).brokers
        assert "TLS certificates reloaded" in b.log_path.read_text()
    finally:
        b.stop()
