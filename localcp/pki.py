"""The control plane's keys and certificates, made with `cryptography`.

kube-apiserver could make a self-signed serving certificate itself (--cert-dir),
but then every client would have to skip verification; a CA of our own lets the
kubeconfig, kube-controller-manager and cert-manager verify the API server.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from localcp.layout import BRIDGE_ADDRESS

VALIDITY = datetime.timedelta(days=30)
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
APISERVER_IPS = ("127.0.0.1", BRIDGE_ADDRESS, "10.96.0.1")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    extensions: list[tuple[x509.ExtensionType, bool]],
    organization: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    if organization:  # what Kubernetes reads as the client's group
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attributes)
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signing_key, hashes.SHA256())


def ensure_pki(pki: Path) -> str:
    """Create the CA, the API server's serving pair and its client pair for the
    kubelet, the service-account keys and the admin token, unless they exist.
    Returns the admin token."""
    token_file = pki / "admin.token"
    if token_file.exists():
        return token_file.read_text().strip()

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(
        "localcp-ca",
        ca_key,
        None,
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
        ],
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in APISERVER_DNS_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in APISERVER_IPS]
    server = _certificate(
        "kube-apiserver",
        server_key,
        (ca, ca_key),
        [
            (x509.SubjectAlternativeName(sans), False),
            (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    # How the API server authenticates to the kubelet (logs, exec, port-forward).
    kubelet_client_key = ec.generate_private_key(ec.SECP256R1())
    kubelet_client = _certificate(
        "kube-apiserver-kubelet-client",
        kubelet_client_key,
        (ca, ca_key),
        [(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        organization="system:masters",
    )
    # Service-account tokens are signed with RSA, which every client verifies.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    _write(pki / "ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    _write(pki / "ca.key", _pem_key(ca_key))
    _write(pki / "apiserver.crt", server.public_bytes(serialization.Encoding.PEM))
    _write(pki / "apiserver.key", _pem_key(server_key))
    _write(pki / "kubelet-client.crt", kubelet_client.public_bytes(serialization.Encoding.PEM))
    _write(pki / "kubelet-client.key", _pem_key(kubelet_client_key))
    _write(pki / "sa.key", _pem_key(sa_key))
    _write(
        pki / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    token = secrets.token_hex(24)
    # kube-apiserver's static token file: token,user,uid,"group1,group2".
    _write(pki / "tokens.csv", f'{token},admin,admin,"system:masters"\n'.encode())
    _write(token_file, token.encode())
    return token


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> None:
    """An admin kubeconfig that verifies the API server against our CA."""
    ca_data = base64.b64encode(ca_file.read_bytes()).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: localcp
  cluster:
    server: {server}
    certificate-authority-data: {ca_data}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: localcp
  context:
    cluster: localcp
    user: admin
current-context: localcp
"""
    )
    path.chmod(0o600)
