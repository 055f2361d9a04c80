"""ACLs with stock clients (`--authorizer acl`): bindings created, described
and deleted with confluent-kafka's and kafka-python's admin clients; produce,
consume, group membership, topic creation and deletion and transactional ids
allowed and denied as Kafka allows and denies them; Metadata hides what a
principal may not describe; DENY wins; super users and
allow.everyone.if.no.acl.found; TLS certificate principals; the bindings
survive a restart."""

import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from certs import make_certs
from conftest import BIN, Broker, free_port

USERS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw"}
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED


def acl_broker(tmp_path, extra=(), certs=None):
    data = tmp_path / "data"
    for user, pw in USERS.items():
        r = subprocess.run([BIN, "scram-users", "--data-dir", str(data), "add", user],
                           input=f"{pw}\n".encode(), capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
    b = Broker(data)
    b.sasl_port = free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{b.sasl_port}"
    if certs is not None:
        b.ssl_port = free_port()
        listeners += f",SSL://127.0.0.1:{b.ssl_port}"
        extra = [*extra, "--ssl-keystore-location", str(certs.keystore),
                 "--ssl-truststore-location", str(certs.ca), "--ssl-client-auth", "required"]
    b.extra_args += ["--listeners", listeners, "--authorizer", "acl",
                     "--super-users", "User:admin", *extra]
    return b.start()


@pytest.fixture
def abroker(tmp_path):
    b = acl_broker(tmp_path)
    yield b
    b.stop()


def conf(b, user):
    return {
        "bootstrap.servers": f"127.0.0.1:{b.sasl_port}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": USERS[user],
    }


def admin(b, user="admin"):
    return AdminClient(conf(b, user))


def create_acls(b, *bindings):
    a = admin(b)  # kept alive until the futures resolve
    for f in a.create_acls(list(bindings)).values():
        f.result(timeout=30)


def acl(rtype, name, principal, op, perm=ALLOW, pattern=LITERAL):
    return AclBinding(rtype, name, pattern, principal, "*", op, perm)


def create_topic(b, name, partitions=1):
    a = admin(b)
    for f in a.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(timeout=30)


def produce(b, user, topic, values, **extra):
    """Produces `values`; returns the delivery errors (None for each success)."""
    p = Producer({**conf(b, user), "message.timeout.ms": 10000, **extra})
    errors = []
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    return errors


def consume(b, user, topic, group, n, timeout=20):
    """Reads up to n values with a consumer group; returns (values, errors)."""
    c = Consumer({**conf(b, user), "group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, errors, deadline = [], [], time.time() + timeout
    while time.time() < deadline and len(got) < n:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            errors.append(m.error())
            if m.error().code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                    KafkaError.GROUP_AUTHORIZATION_FAILED):
                break
        else:
            got.append(m.value())
    c.close()
    return got, errors


def test_acls_are_created_described_and_deleted_with_admin_clients(abroker):
    a = admin(abroker)
    bindings = [
        acl(ResourceType.TOPIC, "orders", "User:alice", AclOperation.READ),
        acl(ResourceType.TOPIC, "logs-", "User:*", AclOperation.WRITE, pattern=PREFIXED),
        acl(ResourceType.GROUP, "g", "User:alice", AclOperation.READ, DENY),
        acl(ResourceType.BROKER, "kafka-cluster", "User:bob", AclOperation.DESCRIBE),
        acl(ResourceType.TRANSACTIONAL_ID, "tx", "User:alice", AclOperation.WRITE),
    ]
    for f in a.create_acls(bindings).values():
        f.result(timeout=30)
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    assert sorted(map(str, a.describe_acls(everything).result(timeout=30))) == sorted(map(str, bindings))
    # MATCH: every binding that applies to topic logs-app.
    match = AclBindingFilter(ResourceType.TOPIC, "logs-app", ResourcePatternType.MATCH, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    assert [x.name for x in a.describe_acls(match).result(timeout=30)] == ["logs-"]
    by_user = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None,
                               AclOperation.ANY, AclPermissionType.ANY)
    assert len(a.describe_acls(by_user).result(timeout=30)) == 3
    # A CLUSTER binding must name kafka-cluster.
    bad = acl(ResourceType.BROKER, "other", "User:bob", AclOperation.ALTER)
    with pytest.raises(KafkaException) as e:
        a.create_acls([bad])[bad].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST
    # Deleting by filter answers what it removed.
    deny_filter = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                   AclOperation.ANY, DENY)
    removed = a.delete_acls([deny_filter])[deny_filter].result(timeout=30)
    assert [x.name for x in removed] == ["g"]
    assert len(a.describe_acls(everything).result(timeout=30)) == 4
    # A principal without ALTER on the cluster may not create or describe ACLs.
    alice = admin(abroker, "alice")
    with pytest.raises(KafkaException) as e:
        alice.create_acls([bad])[bad].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # (librdkafka drops DescribeAcls' top-level error: alice just sees nothing;
    # kafka-python reports it, below.)
    assert alice.describe_acls(everything).result(timeout=30) == []
    # The bindings survive a restart.
    abroker.restart()
    a = admin(abroker)
    assert len(a.describe_acls(everything).result(timeout=30)) == 4


def test_kafka_python_admin_manages_acls(abroker):
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, KafkaAdminClient,
                             ResourcePattern, ResourcePatternFilter)
    from kafka.admin import ACLResourcePatternType as PT
    from kafka.admin import ResourceType as RT

    ka = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{abroker.sasl_port}",
                          security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                          sasl_plain_username="admin", sasl_plain_password="admin-pw")
    try:
        binding = ACL("User:bob", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                      ResourcePattern(RT.TOPIC, "kp-topic", PT.LITERAL))
        result = ka.create_acls([binding])
        assert result["failed"] == [] and len(result["succeeded"]) == 1
        f = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                      permission_type=ACLPermissionType.ANY,
                      resource_pattern=ResourcePatternFilter(RT.TOPIC, "kp-topic", PT.LITERAL))
        acls, error = ka.describe_acls(f)
        assert error.errno == 0 and [a.principal for a in acls] == ["User:bob"]
        deleted = ka.delete_acls([f])
        assert len(deleted[0][1]) == 1
        assert ka.describe_acls(f)[0] == []
    finally:
        ka.close()
    # Without DESCRIBE on the cluster, describing ACLs is refused.
    from kafka.errors import ClusterAuthorizationFailedError
    kb = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{abroker.sasl_port}",
                          security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                          sasl_plain_username="bob", sasl_plain_password="bob-pw")
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            kb.describe_acls(f)
    finally:
        kb.close()


def test_produce_and_consume_need_write_read_and_the_group(abroker):
    create_topic(abroker, "orders")
    # No ACL covers the topic: only super users may use it.
    errors = produce(abroker, "alice", "orders", [b"x"])
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    create_acls(abroker, acl(ResourceType.TOPIC, "orders", "User:alice", AclOperation.WRITE))
    assert produce(abroker, "alice", "orders", [b"a1", b"a2"]) == [None, None]
    # bob is covered by no binding on the topic: still refused.
    errors = produce(abroker, "bob", "orders", [b"b1"])
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # READ on the topic without READ on the group: the group refuses.
    create_acls(abroker, acl(ResourceType.TOPIC, "orders", "User:bob", AclOperation.READ))
    got, errors = consume(abroker, "bob", "orders", "bob-group", 2)
    assert got == [] and any(e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED for e in errors), errors
    create_acls(abroker, acl(ResourceType.GROUP, "bob-", "User:bob", AclOperation.READ,
                             pattern=PREFIXED))
    got, errors = consume(abroker, "bob", "orders", "bob-group", 2)
    assert got == [b"a1", b"a2"], errors
    # A DENY wins over the ALLOW that let bob read.
    create_acls(abroker, acl(ResourceType.TOPIC, "ord", "User:bob", AclOperation.READ, DENY,
                             pattern=PREFIXED))
    got, errors = consume(abroker, "bob", "orders", "bob-group2", 2, timeout=10)
    assert got == [] and any(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors), errors


def test_metadata_shows_only_what_a_principal_may_describe(abroker):
    for t in ("visible", "hidden"):
        create_topic(abroker, t)
    create_acls(abroker, acl(ResourceType.TOPIC, "visible", "User:alice", AclOperation.READ))
    md = Producer(conf(abroker, "alice")).list_topics(timeout=10)
    assert "visible" in md.topics and "hidden" not in md.topics
    # Named explicitly, an undescribable topic is refused whether or not it exists.
    from kafka import KafkaConsumer
    kc = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{abroker.sasl_port}",
                       security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                       sasl_plain_username="alice", sasl_plain_password="alice-pw")
    try:
        assert kc.partitions_for_topic("visible") == {0}
        assert kc.topics() == {"visible"}
    finally:
        kc.close()
    # Authorized operations, as the admin client asks for them.
    from confluent_kafka import TopicCollection
    alice = admin(abroker, "alice")
    desc = alice.describe_topics(
        TopicCollection(["visible"]), include_authorized_operations=True)["visible"].result(timeout=30)
    assert set(desc.authorized_operations) == {AclOperation.READ, AclOperation.DESCRIBE}
    with pytest.raises(KafkaException) as e:
        alice.describe_topics(TopicCollection(["hidden"]))["hidden"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_topic_create_and_delete_need_create_and_delete(abroker):
    a = admin(abroker, "bob")
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("bob-t", 1, 1)])["bob-t"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    create_acls(abroker, acl(ResourceType.TOPIC, "bob-", "User:bob", AclOperation.CREATE,
                             pattern=PREFIXED))
    a.create_topics([NewTopic("bob-t", 1, 1)])["bob-t"].result(timeout=30)
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("alice-t", 1, 1)])["alice-t"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # An existing topic bob may not create is not revealed to him.
    create_topic(abroker, "secret")
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("secret", 1, 1)])["secret"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as e:
        a.delete_topics(["bob-t"])["bob-t"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    create_acls(abroker, acl(ResourceType.TOPIC, "bob-t", "User:bob", AclOperation.DELETE))
    a.delete_topics(["bob-t"])["bob-t"].result(timeout=30)
    # Auto-creation through Metadata needs CREATE too.
    errors = produce(abroker, "alice", "auto-made", [b"x"])
    assert errors and errors[0] is not None
    assert "auto-made" not in admin(abroker).list_topics(timeout=10).topics


def test_transactional_and_idempotent_producers(abroker):
    create_topic(abroker, "tx-topic")
    create_acls(abroker, acl(ResourceType.TOPIC, "tx-topic", "User:alice", AclOperation.WRITE))
    # Idempotence needs only WRITE on some topic (KIP-679).
    assert produce(abroker, "alice", "tx-topic", [b"i1"], **{"enable.idempotence": True}) == [None]
    # bob may write nowhere: no producer id.
    errors = produce(abroker, "bob", "tx-topic", [b"x"], **{"enable.idempotence": True})
    assert errors and errors[0] is not None
    # A transactional id needs WRITE on it.
    p = Producer({**conf(abroker, "alice"), "transactional.id": "tx-alice"})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(10)
    assert e.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    create_acls(abroker, acl(ResourceType.TRANSACTIONAL_ID, "tx-", "User:alice",
                             AclOperation.WRITE, pattern=PREFIXED))
    p = Producer({**conf(abroker, "alice"), "transactional.id": "tx-alice"})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce("tx-topic", value=b"t1")
    p.commit_transaction(30)


def test_allow_everyone_if_no_acl_found(tmp_path):
    b = acl_broker(tmp_path, ["--allow-everyone-if-no-acl-found"])
    try:
        create_topic(b, "open")
        create_topic(b, "closed")
        create_acls(b, acl(ResourceType.TOPIC, "closed", "User:alice", AclOperation.WRITE))
        assert produce(b, "bob", "open", [b"x"]) == [None]
        errors = produce(b, "bob", "closed", [b"x"])
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
        assert produce(b, "alice", "closed", [b"x"]) == [None]
    finally:
        b.stop()


def test_a_certificate_subject_is_the_principal_on_ssl(tmp_path):
    certs = make_certs(tmp_path / "certs")
    b = acl_broker(tmp_path, certs=certs)
    try:
        create_topic(b, "certified")
        create_acls(b, acl(ResourceType.TOPIC, "certified", f"User:{certs.client_principal}",
                           AclOperation.WRITE))
        ssl = {"bootstrap.servers": f"127.0.0.1:{b.ssl_port}", "security.protocol": "SSL",
               "ssl.ca.location": str(certs.ca), "ssl.certificate.location": str(certs.client_cert),
               "ssl.key.location": str(certs.client_key), "message.timeout.ms": 10000}
        p = Producer(ssl)
        errors = []
        p.produce("certified", value=b"by cert", on_delivery=lambda e, m: errors.append(e))
        p.flush(30)
        assert errors == [None]
        # PLAINTEXT clients are ANONYMOUS, which nothing allows.
        p = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 10000})
        errors = []
        p.produce("certified", value=b"anon", on_delivery=lambda e, m: errors.append(e))
        p.flush(30)
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    finally:
        b.stop()


def test_kafka_python_aiokafka_and_kcat_see_authorization_errors(abroker):
    import asyncio

    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    create_topic(abroker, "guarded")
    kw = dict(bootstrap_servers=f"127.0.0.1:{abroker.sasl_port}", security_protocol="SASL_PLAINTEXT",
              sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="bob", sasl_plain_password="bob-pw")
    kp = KafkaProducer(max_block_ms=5000, **kw)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            kp.send("guarded", b"x").get(timeout=10)
    finally:
        kp.close()

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import TopicAuthorizationFailedError as AioTAF

    async def aio():
        ap = AIOKafkaProducer(**kw)
        await ap.start()
        try:
            await ap.send_and_wait("guarded", b"x")
        finally:
            await ap.stop()

    with pytest.raises(AioTAF):
        asyncio.run(aio())

    out = subprocess.run(
        ["kcat", "-b", f"127.0.0.1:{abroker.sasl_port}", "-X", "security.protocol=SASL_PLAINTEXT",
         "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=bob",
         "-X", "sasl.password=bob-pw", "-P", "-t", "guarded"],
        input=b"x\n", capture_output=True, timeout=60)
    assert b"authorization failed" in out.stderr.lower(), out.stderr
