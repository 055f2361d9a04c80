"""SASL/OAUTHBEARER with stock clients: unsecured JWTs (librdkafka's built-in
unsecured token, as Kafka's default validator accepts them) and signed JWTs
checked against a JWKS (a file, or an HTTPS endpoint whose keys rotate),
issuer and audience (tokens signed by the
harness with the openssl command); confluent-kafka, kafka-python, aiokafka
and kafkajs log in and produce and consume; an expired token, a token for
another audience and a token signed by an unknown key are refused with the
errors clients expect; the token's subject is the principal ACLs see."""

import asyncio
import base64
import json
import pathlib
import shutil
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, free_port, refused

HERE = pathlib.Path(__file__).resolve().parent
ISSUER = "https://issuer.sluice.test"
AUDIENCE = "sluice"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Signer:
    """An RSA key made with openssl, its JWKS, and RS256 tokens it signs."""

    def __init__(self, d, kid):
        d.mkdir(parents=True, exist_ok=True)
        self.key = d / f"{kid}.pem"
        self.kid = kid
        subprocess.run(["openssl", "genrsa", "-out", str(self.key), "2048"], check=True,
                       capture_output=True)
        out = subprocess.run(["openssl", "rsa", "-in", str(self.key), "-noout", "-modulus"],
                             check=True, capture_output=True).stdout.decode()
        n = bytes.fromhex(out.strip().split("=", 1)[1])
        self.jwk = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64url(n),
                    "e": "AQAB"}

    def token(self, sub, exp_in=3600, aud=AUDIENCE, iss=ISSUER):
        now = int(time.time())
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        claims = {"sub": sub, "iat": now, "exp": now + exp_in}
        claims.update({k: v for k, v in (("iss", iss), ("aud", aud)) if v is not None})
        payload = b64url(json.dumps(claims).encode())
        signing_input = f"{header}.{payload}".encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input, check=True, capture_output=True).stdout
        return f"{header}.{payload}.{b64url(sig)}"


def unsecured(sub, exp_in=3600):
    now = int(time.time())
    header = b64url(json.dumps({"alg": "none"}).encode())
    payload = b64url(json.dumps({"sub": sub, "iat": now, "exp": now + exp_in}).encode())
    return f"{header}.{payload}."


def oauth_broker(tmp_path, extra, create=True):
    b = Broker(tmp_path / "data")
    b.sasl_port = free_port()
    b.extra_args += [
        "--listeners",
        f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{b.sasl_port}",
        "--sasl-enabled-mechanisms", "OAUTHBEARER", *extra,
    ]
    b.start()
    if create:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in a.create_topics([NewTopic("oauth", 1, 1)]).values():
            f.result(timeout=30)
    return b


def base_conf(b):
    return {"bootstrap.servers": f"127.0.0.1:{b.sasl_port}",
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER"}


def round_trip(conf, tag):
    p = Producer(conf)
    errors = []
    for i in range(5):
        p.produce("oauth", value=f"{tag}-{i}".encode(), on_delivery=lambda e, m: errors.append(e))
    assert p.flush(30) == 0
    assert errors == [None] * 5, errors
    c = Consumer({**conf, "group.id": f"g-{tag}", "auto.offset.reset": "earliest"})
    c.subscribe(["oauth"])
    want, deadline = {f"{tag}-{i}".encode() for i in range(5)}, time.time() + 30
    while want and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            want.discard(m.value())
    c.close()
    assert not want


def test_unsecured_tokens_as_kafkas_default_validator(tmp_path):
    b = oauth_broker(tmp_path, ["--sasl-oauthbearer-unsecured-tokens"])
    try:
        # librdkafka's own unsecured token.
        round_trip({**base_conf(b), "enable.sasl.oauthbearer.unsecure.jwt": True,
                    "sasl.oauthbearer.config": "principal=alice"}, "builtin")
        # An expired one, handed over by the application.
        errors = refused({**base_conf(b), "oauth_cb": lambda _: (unsecured("alice", -600),
                                                                  time.time() + 3600)})
        assert any(e.code() == -169 for e in errors), errors  # _AUTHENTICATION
    finally:
        b.stop()


@pytest.fixture
def signed(tmp_path):
    good, rogue = Signer(tmp_path / "keys", "k1"), Signer(tmp_path / "keys", "k2")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [good.jwk]}))
    b = oauth_broker(tmp_path, [
        "--sasl-oauthbearer-jwks-endpoint-url", f"file://{jwks}",
        "--sasl-oauthbearer-expected-issuer", ISSUER,
        "--sasl-oauthbearer-expected-audience", AUDIENCE,
    ])
    yield b, good, rogue
    b.stop()


def test_signed_tokens_are_checked_against_keys_issuer_audience_and_expiry(signed):
    b, good, rogue = signed
    token = good.token("alice")
    round_trip({**base_conf(b), "oauth_cb": lambda _: (token, time.time() + 3600)}, "signed")
    for bad in (good.token("alice", exp_in=-600), good.token("alice", aud="other"),
                good.token("alice", iss="https://elsewhere"), rogue.token("alice")):
        errors = refused({**base_conf(b), "oauth_cb": lambda _, t=bad: (t, time.time() + 3600)})
        assert any(e.code() == -169 for e in errors), errors
    # Unsecured tokens are not accepted by a broker that checks signatures.
    errors = refused({**base_conf(b), "oauth_cb": lambda _: (unsecured("alice"), time.time() + 3600)})
    assert any(e.code() == -169 for e in errors), errors


def test_kafka_python_aiokafka_and_kafkajs_with_signed_tokens(signed):
    b, good, _ = signed
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    from kafka.net.sasl.oauth import AbstractTokenProvider

    token = good.token("bob")

    class Provider(AbstractTokenProvider):
        def token(self):
            return token

    kw = dict(bootstrap_servers=f"127.0.0.1:{b.sasl_port}", security_protocol="SASL_PLAINTEXT",
              sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=Provider())
    p = KafkaProducer(**kw)
    p.send("oauth", b"kp").get(timeout=30)
    p.close()
    c = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=3000, **kw)
    c.assign([KTP("oauth", 0)])
    assert b"kp" in [m.value for m in c]
    c.close()

    from aiokafka import AIOKafkaProducer
    from aiokafka.abc import AbstractTokenProvider as AioProvider

    class AioTokens(AioProvider):
        async def token(self):
            return token

    async def aio():
        ap = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{b.sasl_port}",
                              security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                              sasl_oauth_token_provider=AioTokens())
        await ap.start()
        try:
            await ap.send_and_wait("oauth", b"aio")
        finally:
            await ap.stop()

    asyncio.run(aio())

    node = shutil.which("node")
    assert node and (HERE / "node_modules" / "kafkajs").exists(), "run-all.sh installs kafkajs"
    r = subprocess.run(
        [node, str(HERE / "workers" / "kafkajs_secure.js"), f"127.0.0.1:{b.sasl_port}", "oauth",
         "oauthbearer", "-", "-", "3"],
        capture_output=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "OAUTH_TOKEN": token},
    )
    lines = [json.loads(x) for x in r.stdout.decode().splitlines() if x.strip()]
    assert r.returncode == 0 and lines[-1] == {"ev": "done", "read": 3}, (lines, r.stderr[-2000:])


def test_the_token_subject_is_the_principal(tmp_path):
    signer = Signer(tmp_path / "keys", "k1")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [signer.jwk]}))
    b = oauth_broker(tmp_path, ["--sasl-oauthbearer-jwks-endpoint-url", f"file://{jwks}",
                                "--authorizer", "acl", "--super-users", "User:admin"],
                     create=False)
    try:
        from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                           ResourcePatternType, ResourceType)
        admin_tok = signer.token("admin", aud=None, iss=None)
        alice_tok = signer.token("alice", aud=None, iss=None)
        admin = AdminClient({**base_conf(b), "oauth_cb": lambda _: (admin_tok, time.time() + 3600)})
        for f in admin.create_topics([NewTopic("oauth", 1, 1)]).values():
            f.result(timeout=30)
        binding = AclBinding(ResourceType.TOPIC, "oauth", ResourcePatternType.LITERAL,
                             "User:alice", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
        for f in admin.create_acls([binding]).values():
            f.result(timeout=30)
        errors = []
        p = Producer({**base_conf(b), "oauth_cb": lambda _: (alice_tok, time.time() + 3600)})
        p.produce("oauth", value=b"by alice", on_delivery=lambda e, m: errors.append(e))
        p.flush(30)
        assert errors == [None]
    finally:
        b.stop()


class JwksServer:
    """A JWKS endpoint over HTTPS (the harness CA's server certificate) whose
    document the test can replace, counting the fetches."""

    def __init__(self, certs, jwks, port=0):
        import http.server
        import ssl
        import threading

        self.jwks, self.fetches = jwks, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps(outer.jwks).encode()
                outer.fetches += 1
                self.send_response(200 if self.path == "/keys" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.server_cert, certs.server_key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/keys"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def logs_in(b, token):
    try:
        p = Producer({**base_conf(b), "oauth_cb": lambda _: (token, time.time() + 3600)})
        p.list_topics(timeout=3)
        return True
    except KafkaException:
        return False


def test_keys_from_an_https_endpoint_follow_a_rotation(tmp_path):
    from certs import make_certs
    certs = make_certs(tmp_path / "certs")
    old, new = Signer(tmp_path / "keys", "old"), Signer(tmp_path / "keys", "new")
    server = JwksServer(certs, {"keys": [old.jwk]})
    b = oauth_broker(tmp_path, [
        "--sasl-oauthbearer-jwks-endpoint-url", server.url,
        "--sasl-oauthbearer-jwks-truststore-location", str(certs.ca),
        "--sasl-oauthbearer-expected-issuer", ISSUER,
        "--sasl-oauthbearer-expected-audience", AUDIENCE,
        # No regular refresh during the test: only unknown keys bring one on,
        # at most one per 2 s.
        "--sasl-oauthbearer-jwks-endpoint-refresh-ms", "3600000",
        "--sasl-oauthbearer-jwks-endpoint-retry-backoff-max-ms", "2000",
        "--auth-failures-per-ip-max", "100000",
    ])
    try:
        round_trip({**base_conf(b), "oauth_cb": lambda _: (old.token("alice"),
                                                            time.time() + 3600)}, "https")
        # The provider rotates: a token signed with the new key names a key
        # the broker does not have, which brings a fetch forward; the next
        # login with it succeeds and the old key is gone.
        server.jwks = {"keys": [new.jwk]}
        fetched = server.fetches
        new_token = new.token("alice")
        deadline = time.time() + 30
        while not logs_in(b, new_token):
            assert time.time() < deadline, "the new key was never fetched"
            time.sleep(0.2)
        assert server.fetches > fetched
        assert not logs_in(b, old.token("alice"))
        # Made-up key ids cannot make the broker hammer the provider: six
        # clients retrying logins with an unknown key every 200 ms for 4 s
        # (over a hundred attempts) bring at most one fetch per 2 s.
        bogus = Signer(tmp_path / "keys", "bogus").token("alice")
        errors = []
        clients = [Producer({**base_conf(b), "reconnect.backoff.ms": 100,
                             "reconnect.backoff.max.ms": 200, "error_cb": errors.append,
                             "oauth_cb": lambda _: (bogus, time.time() + 3600)})
                   for _ in range(6)]
        fetched, t0 = server.fetches, time.time()
        while time.time() < t0 + 4:
            for c in clients:
                c.poll(0.05)
        elapsed = time.time() - t0
        assert len(errors) >= 12, f"only {len(errors)} failed logins"
        assert server.fetches - fetched <= elapsed / 2 + 1, (server.fetches - fetched, elapsed)
    finally:
        b.stop()
        server.close()


def test_an_unreachable_endpoint_refuses_logins_until_it_answers(tmp_path):
    from certs import make_certs
    certs = make_certs(tmp_path / "certs")
    signer = Signer(tmp_path / "keys", "k1")
    # Nothing listens on the port yet: the broker starts, refusing tokens.
    port = free_port()
    b = oauth_broker(tmp_path, [
        "--sasl-oauthbearer-jwks-endpoint-url", f"https://127.0.0.1:{port}/keys",
        "--sasl-oauthbearer-jwks-truststore-location", str(certs.ca),
        "--sasl-oauthbearer-jwks-endpoint-retry-backoff-max-ms", "500",
        # librdkafka retries a failed login every 100 ms while it waits.
        "--auth-failures-per-ip-max", "100000",
    ])
    server = None
    try:
        token = signer.token("alice", aud=None, iss=None)
        assert not logs_in(b, token)
        server = JwksServer(certs, {"keys": [signer.jwk]}, port)
        deadline = time.time() + 30
        while not logs_in(b, token):
            assert time.time() < deadline, "the keys were never fetched"
            time.sleep(0.3)
        assert "cannot fetch the JWKS" in b.log_path.read_text()
    finally:
        b.stop()
        if server:
            server.close()
