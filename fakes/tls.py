"""Throw-away X.509 material for the APNs fake, generated at start with ``cryptography``.

A private CA signs a server certificate for 127.0.0.1/localhost (the client
trusts the CA file, so hostname checking stays on, as in production) and a
client certificate for APNs certificate (mTLS) authentication, whose subject
carries the topic in its UID like Apple's "Apple Push Services" certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path  # trust this (``ssl.create_default_context(cafile=...)``)
    server_cert: Path
    server_key: Path
    client_cert: Path  # client certificate and its key in one PEM, as aioapns's ``client_cert`` wants

    def server_context(self) -> ssl.SSLContext:
        """TLS for the fake: h2 by ALPN (aioapns offers none and speaks h2 anyway), client certs optional."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        context.load_verify_locations(self.ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
        context.set_alpn_protocols(["h2"])
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting the fake's CA, for aioapns's ``ssl_context`` argument."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    san: list[x509.GeneralName] | None = None,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def generate_tls_files(directory: Path, client_topic: str) -> TlsFiles:
    """Write a CA, a server certificate for 127.0.0.1 and a client certificate for ``client_topic``."""
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake APNs CA")])
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    server = _cert(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        server_key,
        ca_name,
        ca_key,
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client = _cert(
        x509.Name(
            [
                x509.NameAttribute(NameOID.USER_ID, client_topic),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Apple Push Services: {client_topic}"),
            ]
        ),
        client_key,
        ca_name,
        ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    pem = serialization.Encoding.PEM
    files = TlsFiles(
        ca_file=directory / "apns-ca.pem",
        server_cert=directory / "apns-server.pem",
        server_key=directory / "apns-server.key",
        client_cert=directory / "apns-client.pem",
    )
    files.ca_file.write_bytes(ca.public_bytes(pem))
    files.server_cert.write_bytes(server.public_bytes(pem))
    files.server_key.write_bytes(_pem_key(server_key))
    files.client_cert.write_bytes(client.public_bytes(pem) + _pem_key(client_key))
    for path in (files.server_key, files.client_cert):
        path.chmod(0o600)
    return files
