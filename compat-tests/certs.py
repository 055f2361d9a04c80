"""Certificates for the TLS tests, made fresh by the harness with the openssl
command (no private key is ever committed): a CA, the broker's certificate for
127.0.0.1 and localhost, a client certificate the CA signed, and a client
certificate from a CA the broker does not trust."""

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Certs:
    """Paths of the PEM files."""

    ca: Path
    # The broker's keystore: certificate chain and key in one PEM file.
    keystore: Path
    # Its certificate and key apart, for rotation tests.
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # The subject of client_cert as Kafka writes the principal (RFC 2253).
    client_principal: str
    untrusted_cert: Path
    untrusted_key: Path


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d, name, subject):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", subject,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d, name, subject, ca, ext, key_type=("ec", "-pkeyopt", "ec_paramgen_curve:P-256")):
    _openssl("req", "-newkey", *key_type, "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", subject, cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


def make_certs(d: Path, server_subject="/CN=localhost") -> Certs:
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca", "/CN=Sluice Test CA")
    _ca(d, "evil-ca", "/CN=Untrusted CA")
    _leaf(d, "server", server_subject, "ca",
          "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
          key_type=("rsa:2048",))
    _leaf(d, "client", "/C=DE/O=Acme, Inc/OU=eng/CN=app", "ca",
          "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
    _leaf(d, "untrusted", "/CN=mallory", "evil-ca",
          "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
    keystore = d / "keystore.pem"
    keystore.write_text((d / "server.pem").read_text() + (d / "server.key").read_text())
    return Certs(
        ca=d / "ca.pem",
        keystore=keystore,
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        client_principal="CN=app,OU=eng,O=Acme\\, Inc,C=DE",
        untrusted_cert=d / "untrusted.pem",
        untrusted_key=d / "untrusted.key",
    )
