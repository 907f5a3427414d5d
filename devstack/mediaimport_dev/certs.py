"""Certificates and keys for the local control plane.

One CA signs the API server's serving certificate and the client certificates
(client certificates are how kube-apiserver authenticates users when there is no
identity provider). ECDSA P-256 keys keep generation in the milliseconds, which
matters because every test session and every `mediaimport-dev up` makes fresh ones.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mediaimport_dev import nodenet

# In-cluster clients reach the API server through the `kubernetes` Service, at the first
# address of --service-cluster-ip-range: it must be a SAN.
SERVICE_IP = nodenet.SERVICE_IP
SERVICE_CIDR = nodenet.SERVICE_CIDR
NODE_NAME = "mediaimport-node"
_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterCerts:
    ca: KeyPair
    serving: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    scheduler: KeyPair
    # The kubelet as a client (system:node:<name>, for the Node authorizer), the
    # kubelet's own server (the API server verifies it for logs, exec, port-forward),
    # the API server as the kubelet's client, and kube-proxy.
    kubelet: KeyPair
    kubelet_serving: KeyPair
    apiserver_kubelet_client: KeyPair
    kube_proxy: KeyPair
    # The service-account signing key (private) and its public half, which the
    # API server uses to verify the tokens it and the token controller issue.
    sa_key: Path
    sa_pub: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> (
    x509.CertificateBuilder
):
    # Backdated a little so a clock that differs by seconds between processes
    # never sees a certificate "not yet valid".
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signatures only; a CA also signs certificates and revocation lists."""
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=False,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    directory: Path,
    stem: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    *,
    server_names: list[str] | None = None,
) -> KeyPair:
    key = _new_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server_names:
        sans: list[x509.GeneralName] = []
        for name in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
    return pair


def load(directory: Path) -> ClusterCerts:
    """The certificates `generate` wrote into directory."""

    def pair(stem: str) -> KeyPair:
        return KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")

    return ClusterCerts(
        ca=pair("ca"), serving=pair("apiserver"), admin=pair("admin"),
        controller_manager=pair("controller-manager"), scheduler=pair("scheduler"),
        kubelet=pair("kubelet"), kubelet_serving=pair("kubelet-serving"),
        apiserver_kubelet_client=pair("apiserver-kubelet-client"),
        kube_proxy=pair("kube-proxy"), sa_key=directory / "sa.key", sa_pub=directory / "sa.pub",
    )


def generate(directory: Path) -> ClusterCerts:
    """Write a fresh CA, serving/client certificates and the SA key pair into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    ca_name = _name("mediaimport-dev-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca = KeyPair(directory / "ca.crt", directory / "ca.key")
    ca.cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, ca.key)

    serving = _issue(
        directory,
        "apiserver",
        ca_cert,
        ca_key,
        _name("kube-apiserver"),
        server_names=[
            "127.0.0.1",
            "localhost",
            nodenet.HOST_IP,
            SERVICE_IP,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
    )
    # O=system:masters is bound to cluster-admin by the bootstrap RBAC policy.
    admin = _issue(
        directory, "admin", ca_cert, ca_key, _name("mediaimport-admin", "system:masters")
    )
    # The bootstrap policy binds this user name to the system:kube-controller-manager role;
    # each controller then acts as its own service account (--use-service-account-credentials).
    controller_manager = _issue(
        directory, "controller-manager", ca_cert, ca_key, _name("system:kube-controller-manager")
    )

    scheduler = _issue(directory, "scheduler", ca_cert, ca_key, _name("system:kube-scheduler"))
    kubelet = _issue(
        directory, "kubelet", ca_cert, ca_key, _name(f"system:node:{NODE_NAME}", "system:nodes")
    )
    kubelet_serving = _issue(
        directory, "kubelet-serving", ca_cert, ca_key, _name(NODE_NAME),
        server_names=[nodenet.NODE_IP, NODE_NAME],
    )
    # system:masters may use every kubelet API (logs, exec, port-forward, metrics).
    apiserver_kubelet_client = _issue(
        directory, "apiserver-kubelet-client", ca_cert, ca_key,
        _name("kube-apiserver-kubelet-client", "system:masters"),
    )
    # The bootstrap policy binds system:node-proxier to this user name.
    kube_proxy = _issue(directory, "kube-proxy", ca_cert, ca_key, _name("system:kube-proxy"))

    sa_private = _new_key()
    sa_key = directory / "sa.key"
    sa_pub = directory / "sa.pub"
    _write_key(sa_private, sa_key)
    sa_pub.write_bytes(
        sa_private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    written = ClusterCerts(
        ca, serving, admin, controller_manager, scheduler, kubelet, kubelet_serving,
        apiserver_kubelet_client, kube_proxy, sa_key, sa_pub,
    )
    assert written == load(directory)
    return written
