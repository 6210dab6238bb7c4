"""TLS in front of the embedded broker: a test CA, a server certificate, and stunnel terminating TLS for Tansu.

Tansu advertises one address in its metadata; clients connect there after bootstrap. It is started with the
stunnel port as its advertised listener, so every connection after bootstrap goes through TLS as well.
"""

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.runtime.embedded import EmbeddedBroker, free_port

HOST = "127.0.0.1"
_ATTEMPTS = 3


@dataclass(frozen=True)
class Authority:
    """A certificate authority made for one test run: its certificate file and its key."""

    cert_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def make_authority(directory: Path, common_name: str) -> Authority:
    """Create a self-signed CA and write its certificate to `<directory>/<common_name>.pem`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{common_name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(path, cert, key)


def issue_cert(authority: Authority, directory: Path, name: str, usage: x509.ObjectIdentifier) -> tuple[Path, Path]:
    """Issue a certificate for 127.0.0.1 and localhost with one extended usage; return (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, _write_key(key, directory / f"{name}.key")


def issue_server_cert(authority: Authority, directory: Path) -> tuple[Path, Path]:
    """Issue the broker's certificate; return (certificate file, key file)."""
    return issue_cert(authority, directory, "server", ExtendedKeyUsageOID.SERVER_AUTH)


def issue_client_cert(authority: Authority, directory: Path) -> tuple[Path, Path]:
    """Issue a client's certificate, for a terminator that requires one; return (certificate file, key file)."""
    return issue_cert(authority, directory, "client", ExtendedKeyUsageOID.CLIENT_AUTH)


def stunnel_binary() -> str:
    """Return Debian's stunnel; `make test` installs the stunnel4 package when it is missing."""
    found = shutil.which("stunnel4") or shutil.which("stunnel")
    if found is None:
        raise RuntimeError("stunnel is not installed: run `make test`, or apt-get install stunnel4")
    return found


def _handshakes(port: int, cafile: Path, client: tuple[Path, Path] | None) -> bool:
    # A TLS handshake verified against our CA: an answer from another process that took the port does not count.
    context = ssl.create_default_context(cafile=str(cafile))
    if client is not None:
        context.load_cert_chain(*client)
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as raw, context.wrap_socket(raw, server_hostname=HOST):
            return True
    except (OSError, ssl.SSLError):
        return False


class TlsBroker:
    """The embedded broker behind stunnel: TLS on `tls_port`, forwarded to Tansu's plain port, which advertises `tls_port`.

    With `mutual`, stunnel also requires a client certificate issued by the same CA (`client_cert`).
    """

    def __init__(self, directory: Path, mutual: bool = False, startup_timeout: float = 15.0):
        self.directory = directory
        self.startup_timeout = startup_timeout
        self.authority = make_authority(directory, "fengqiao-test-ca")
        self.cert_path, self.key_path = issue_server_cert(self.authority, directory)
        self.client_cert = issue_client_cert(self.authority, directory) if mutual else None
        self.tls_port: int | None = None
        self.broker: EmbeddedBroker | None = None
        self._stunnel: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Return the TLS address clients bootstrap from."""
        if self.tls_port is None:
            raise RuntimeError("TLS broker is not running")
        return f"{HOST}:{self.tls_port}"

    def start(self) -> str:
        """Start Tansu advertising a free port, then stunnel on that port; return the TLS bootstrap address."""
        # The TLS port is chosen before stunnel binds it, so another process can take it first: try again.
        for _ in range(_ATTEMPTS):
            tls_port = free_port(HOST)
            self.broker = EmbeddedBroker(HOST, advertised_port=tls_port)
            self.broker.start()
            if self._start_stunnel(tls_port, self.broker.port):
                self.tls_port = tls_port
                return self.bootstrap_servers
            self.stop()
        raise RuntimeError(f"stunnel did not start after {_ATTEMPTS} attempts; see {self.directory / 'stunnel.log'}")

    def _start_stunnel(self, tls_port: int, plain_port: int) -> bool:
        config = self.directory / "stunnel.conf"
        config.write_text(
            "\n".join(
                [
                    "foreground = yes",
                    "pid =",
                    f"output = {self.directory / 'stunnel.log'}",
                    "debug = notice",
                    "[kafka]",
                    f"accept = {HOST}:{tls_port}",
                    f"connect = {HOST}:{plain_port}",
                    f"cert = {self.cert_path}",
                    f"key = {self.key_path}",
                    *([f"CAfile = {self.authority.cert_path}", "verifyChain = yes"] if self.client_cert else []),
                    "",
                ]
            )
        )
        self._stunnel = subprocess.Popen(
            [stunnel_binary(), str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._stunnel.poll() is not None:
                return False
            if _handshakes(tls_port, self.authority.cert_path, self.client_cert):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop stunnel and the broker."""
        stunnel, self._stunnel = self._stunnel, None
        if stunnel is not None and stunnel.poll() is None:
            stunnel.terminate()
            try:
                stunnel.wait(5)
            except subprocess.TimeoutExpired:
                stunnel.kill()
                stunnel.wait()
        broker, self.broker = self.broker, None
        if broker is not None:
            broker.stop()
        self.tls_port = None

    def __enter__(self) -> "TlsBroker":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
