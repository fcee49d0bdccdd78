"""Shared fixtures: the Flask app and client (as in Flask's tutorial), AdmissionReview
builders, throwaway certificates in a kubelet-style Secret mount, and a running server."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry

from app.admission.policy import LabelPolicy
from app.config import ServerConfig
from app.http import create_app
from app.metrics import Metrics
from app.serving import WebhookServer
from tests.certs import CertificateAuthority, KeyPair

# No per-example deadline, and no health check on how slowly examples are generated: a
# loaded CI machine (a cluster and builds beside the tests) must not turn into a failing
# test. What is checked, the property, is unchanged.
settings.register_profile("unit", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("unit")

UID = "705ab4f5-6393-11e8-b7cc-42010a800002"
POD = {"group": "", "version": "v1", "kind": "Pod"}
ABSENT = object()  # "leave this field out", as opposed to an explicit null

ReviewFactory = Callable[..., dict[str, Any]]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 10.0) -> Any:
    """Poll until `condition()` is truthy and return it; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def build_review(
    labels: object = ABSENT,
    *,
    uid: str = UID,
    api_version: str = "admission.k8s.io/v1",
    kind: dict[str, str] = POD,
    operation: str = "CREATE",
    name: str | None = "web",
    generate_name: str | None = None,
    namespace: str = "default",
    dry_run: bool = False,
    metadata: object = ABSENT,
) -> dict[str, Any]:
    """An AdmissionReview as the API server sends it for creating a Pod by default."""
    if metadata is ABSENT:
        metadata = {"namespace": namespace}
        if name is not None:
            metadata["name"] = name
        if generate_name is not None:
            metadata["generateName"] = generate_name
        if labels is not ABSENT:
            metadata["labels"] = labels
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind["kind"], "spec": {"containers": []}}
    if metadata is not ABSENT:
        obj["metadata"] = metadata
    return {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": kind,
            "resource": {"group": kind["group"], "version": kind["version"], "resource": "pods"},
            "operation": operation,
            "namespace": namespace,
            "name": name or "",
            "object": obj,
            "dryRun": dry_run,
        },
    }


@pytest.fixture(scope="session")
def make_review() -> ReviewFactory:
    """`make_review(labels, **fields)`; session-scoped so hypothesis tests can use it."""
    return build_review


@pytest.fixture
def policy() -> LabelPolicy:
    return LabelPolicy()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def app(policy: LabelPolicy, metrics: Metrics) -> Flask:
    return create_app(policy, metrics, max_body_bytes=64 * 1024)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# --- certificates and a running server ---------------------------------------------


@pytest.fixture(scope="session")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="session")
def ca_file(ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ca.write(tmp_path_factory.mktemp("ca") / "ca.crt")


class MountedSecret:
    """A directory laid out the way kubelet mounts a Secret, and updated the same way:
    `tls.crt -> ..data/tls.crt`, `..data -> ..<n>`, and an update writes a new `..<n>`
    and renames a new `..data` link over the old one, so both files change in one
    atomic step (a watcher of file events sees no change to `tls.crt` itself).

    Stated here on its own, so that the unit tests need no kubelet; the e2e suite
    checks the same against a real kubelet's Secret volume.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cert_path = root / "tls.crt"
        self.key_path = root / "tls.key"
        self._version = 0

    def write(self, cert_pem: bytes, key_pem: bytes) -> None:
        self._version += 1
        payload = f"..{self._version}"
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        (self.root / payload).mkdir(parents=True)
        for name, content in (("tls.crt", cert_pem), ("tls.key", key_pem)):
            (self.root / payload / name).write_bytes(content)
            (self.root / payload / name).chmod(0o600)
        (self.root / "..data_tmp").symlink_to(payload)
        os.replace(self.root / "..data_tmp", self.root / "..data")
        for name in ("tls.crt", "tls.key"):
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")
        if old is not None:
            shutil.rmtree(self.root / old)

    def install(self, pair: KeyPair) -> None:
        self.write(pair.cert_pem, pair.key_pem)


@pytest.fixture
def first_pair(ca: CertificateAuthority) -> KeyPair:
    return ca.issue("first.pod-labeler.test")


@pytest.fixture
def second_pair(ca: CertificateAuthority) -> KeyPair:
    """What a renewal brings: another pair from the same CA."""
    return ca.issue("second.pod-labeler.test")


@pytest.fixture
def secret(tmp_path: Path, first_pair: KeyPair) -> MountedSecret:
    mounted = MountedSecret(tmp_path / "secret")
    mounted.root.mkdir()
    mounted.install(first_pair)
    return mounted


@pytest.fixture
def server_config(secret: MountedSecret) -> ServerConfig:
    return ServerConfig(
        tls_cert=secret.cert_path,
        tls_key=secret.key_path,
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        cert_reload_interval=0.05,
        max_body_bytes=64 * 1024,
        drain_timeout=5.0,
    )


@pytest.fixture
def server(server_config: ServerConfig) -> Iterator[WebhookServer]:
    with WebhookServer(server_config) as running:
        yield running


@pytest.fixture
def client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


@pytest.fixture
def connect(
    server: WebhookServer, client_context: ssl.SSLContext
) -> Iterator[Callable[[], http.client.HTTPSConnection]]:
    """Opens HTTPS connections to the server (verified against the test CA)."""
    opened: list[http.client.HTTPSConnection] = []

    def open_connection() -> http.client.HTTPSConnection:
        host, port = server.address
        connection = http.client.HTTPSConnection(host, port, context=client_context, timeout=10)
        connection.connect()
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        connection.close()


def post_review(
    connection: http.client.HTTPConnection, review: object, *, body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """POST /mutate on an open connection and read the whole answer (keep-alive safe)."""
    payload = json.dumps(review).encode() if body is None else body
    connection.request(
        "POST", "/mutate", body=payload, headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def served_certificate(connection: http.client.HTTPSConnection) -> bytes:
    assert isinstance(connection.sock, ssl.SSLSocket)
    der = connection.sock.getpeercert(binary_form=True)
    assert der is not None
    return der
