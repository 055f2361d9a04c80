"""SCRAM users managed with the admin clients (AlterUserScramCredentials,
DescribeUserScramCredentials): confluent-kafka and kafka-python add, list
and delete users, get Kafka's errors for what Kafka refuses, and the users
survive a restart. Only salted credentials are stored, never a password.
`sluice scram-users` adds the first user offline, and refuses to run beside
a broker on the same data directory."""

import subprocess

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

SHA256, SHA512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512


def described(admin, users=None):
    """user -> sorted [(mechanism, iterations)] (or the exception)."""
    out = {}
    futures = admin.describe_user_scram_credentials(users)
    if not isinstance(futures, dict):
        futures = futures.result()
        return {u: sorted((i.mechanism, i.iterations) for i in d.scram_credential_infos) for u, d in futures.items()}
    for user, f in futures.items():
        try:
            d = f.result()
            out[user] = sorted((i.mechanism, i.iterations) for i in d.scram_credential_infos)
        except KafkaException as e:
            out[user] = e.args[0]
    return out


def test_confluent_kafka_adds_lists_deletes_and_keeps_users(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    alterations = [
        UserScramCredentialUpsertion("alice", ScramCredentialInfo(SHA256, 8192), b"alice-secret"),
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(SHA512, 4096), b"bob-secret", b"salty"),
    ]
    for f in admin.alter_user_scram_credentials(alterations).values():
        f.result()
    admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("alice", ScramCredentialInfo(SHA512, 4096), b"alice-secret"),
    ])["alice"].result()
    assert described(admin) == {"alice": [(SHA256, 8192), (SHA512, 4096)], "bob": [(SHA512, 4096)]}
    got = described(admin, ["bob", "nobody"])
    assert got["bob"] == [(SHA512, 4096)]
    assert got["nobody"].name() == "RESOURCE_NOT_FOUND", got

    # What Kafka refuses, per user.
    futures = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(SHA256, 1000), b"x"),
        UserScramCredentialDeletion("dave", SHA256),
        UserScramCredentialUpsertion("erin", ScramCredentialInfo(SHA256, 4096), b"x"),
        UserScramCredentialDeletion("erin", SHA512),
    ])
    errors = {}
    for user, f in futures.items():
        try:
            f.result()
            errors[user] = None
        except KafkaException as e:
            errors[user] = e.args[0].name()
    assert errors == {
        "carol": "UNACCEPTABLE_CREDENTIAL",
        "dave": "RESOURCE_NOT_FOUND",
        "erin": "DUPLICATE_RESOURCE",
    }, errors

    admin.alter_user_scram_credentials([UserScramCredentialDeletion("bob", SHA512)])["bob"].result()
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert described(admin) == {"alice": [(SHA256, 8192), (SHA512, 4096)]}
    stored = (broker.data_dir / "scram-credentials").read_bytes()
    assert b"alice-secret" not in stored and b"alice" not in stored


def test_kafka_python_adds_lists_and_deletes_users(broker):
    from kafka.admin import KafkaAdminClient
    from kafka.admin import ScramMechanism as M
    from kafka.admin import UserScramCredentialDeletion as Del
    from kafka.admin import UserScramCredentialUpsertion as Up

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    result = admin.alter_user_scram_credentials([
        Up("frank", M.SCRAM_SHA_256, "frank-secret", iterations=4096),
        Up("grace", M.SCRAM_SHA_512, "grace-secret", iterations=16384),
        Up("heidi", M.SCRAM_SHA_256, "x", iterations=20000),
    ])
    assert result["frank"] is None and result["grace"] is None, result
    assert result["heidi"] is not None, result
    got = admin.describe_user_scram_credentials()
    assert set(got) == {"frank", "grace"}, got
    assert [(i["mechanism"], i["iterations"]) for i in got["grace"]["credential_infos"]] == [(M.SCRAM_SHA_512, 16384)]
    assert admin.alter_user_scram_credentials([Del("frank", M.SCRAM_SHA_256)])["frank"] is None
    got = admin.describe_user_scram_credentials(["frank"])
    assert got["frank"]["error"] is not None, got
    admin.close()


def test_the_first_user_is_added_offline(tmp_path):
    from conftest import BIN, Broker, free_port

    data = tmp_path / "data"

    def cli(*args, stdin=""):
        return subprocess.run([BIN, "scram-users", "--data-dir", str(data), *args],
                              input=stdin.encode(), capture_output=True, timeout=60)

    r = cli("add", "root", "--mechanism", "SCRAM-SHA-256", stdin="root-secret\n")
    assert r.returncode == 0, r.stderr
    assert cli("add", "nopw").returncode != 0  # no password on stdin
    assert cli("add", "x", "--iterations", "10", stdin="pw\n").returncode != 0
    b = Broker(data)
    b.sasl_port = free_port()
    b.extra_args += ["--listeners",
                     f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{b.sasl_port}"]
    b.start()
    try:
        r = cli("list")
        assert r.returncode != 0 and b"in use" in r.stderr, r
        p = Producer({"bootstrap.servers": f"127.0.0.1:{b.sasl_port}",
                      "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
                      "sasl.username": "root", "sasl.password": "root-secret"})
        assert p.list_topics(timeout=10).brokers
        assert described(AdminClient({"bootstrap.servers": b.bootstrap})) == {
            "root": [(SHA256, 8192)]}
    finally:
        b.stop()
    r = cli("list")
    assert r.returncode == 0 and r.stdout.decode().split() == ["root", "SCRAM-SHA-256", "iterations=8192"]
    assert "root-secret" not in (data / "scram-credentials").read_text()
