"""SMTP stand-ins that need TLS and a login, for the `fieldgate serve` tests.

Makes a throwaway CA and a server certificate for 127.0.0.1/localhost
(the CA goes to STATE/ca.pem, for FIELDGATE_SMTP_CA_FILE), then serves
two ports with aiosmtpd until killed:
  - STARTTLS_PORT: plain at first; STARTTLS is required before AUTH and
    MAIL, and AUTH (LOGIN/PLAIN) before MAIL;
  - SMTPS_PORT: TLS from the first byte, AUTH before MAIL.
Accepted messages land in the Maildir MAILDIR.

usage: tls_server.py STATE MAILDIR USER PASSWORD STARTTLS_PORT SMTPS_PORT
"""

import datetime
import ipaddress
import pathlib
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certificates(state: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fieldgate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (state / "ca.pem").write_bytes(ca.public_bytes(pem))
    cert = state / "server.pem"
    cert.write_bytes(leaf.public_bytes(pem))
    key_file = state / "server.key"
    key_file.write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key_file


def main() -> None:
    state, maildir, user, password, starttls_port, smtps_port = sys.argv[1:]
    state_dir = pathlib.Path(state)
    state_dir.mkdir(parents=True, exist_ok=True)
    cert, key = certificates(state_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd itself answers 235 or 535.
        return AuthResult(success=ok, handled=False)

    handler = Mailbox(maildir)
    starttls = Controller(
        handler,
        hostname="127.0.0.1",
        port=int(starttls_port),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=True,
    )
    # TLS from the first byte: aiosmtpd's "require TLS" checks only
    # STARTTLS, and this port speaks nothing else.
    smtps = Controller(
        handler,
        hostname="127.0.0.1",
        port=int(smtps_port),
        ssl_context=context,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    starttls.start()
    smtps.start()
    print("listening", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    starttls.stop()
    smtps.stop()


if __name__ == "__main__":
    main()
