"""TLS between kube-apiserver and the webhook, managed by cert-manager. Exercises:
cert-manager's controller (issuing, renewing), its cainjector (caBundle), the API
server's certificate verification, and the server's certificate reload."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509

from tests.certs import CertificateAuthority
from tests.e2e.cluster import Cluster, unique, wait_for
from tests.e2e.load import STEADY_RATE, PodCreationLoad
from tests.e2e.release import Release, serving_certificate_of, webhook_configuration

# The webhook server's gauge of the serving certificate's notAfter, in unix seconds.
CERT_EXPIRY_METRIC = "pod_labeler_certificate_expiry_timestamp_seconds"


@dataclass(frozen=True)
class WebhookTLS:
    configuration: dict[str, Any]
    certificate: dict[str, Any]

    @property
    def webhook(self) -> dict[str, Any]:
        webhooks: list[dict[str, Any]] = self.configuration["webhooks"]
        return webhooks[0]

    @property
    def service(self) -> dict[str, Any]:
        service: dict[str, Any] = self.webhook["clientConfig"]["service"]
        return service

    @property
    def secret_name(self) -> str:
        return str(self.certificate["spec"]["secretName"])


@pytest.fixture
def webhook_tls(cluster: Cluster, release: Release) -> WebhookTLS:
    configuration = webhook_configuration(cluster, release)
    cert_namespace, cert_name = serving_certificate_of(configuration)
    certificate = cluster.get("certificate", cert_name, "-n", cert_namespace)
    return WebhookTLS(configuration, certificate)


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _serving_certificate(cluster: Cluster, release: Release, tls: WebhookTLS) -> x509.Certificate:
    return _load(cluster.secret_data(release.namespace, tls.secret_name, "tls.crt"))


def test_cainjector_puts_the_issuing_ca_into_the_webhook_ca_bundle(
    cluster: Cluster, release: Release, webhook_tls: WebhookTLS
) -> None:
    bundle = base64.b64decode(webhook_tls.webhook["clientConfig"]["caBundle"])
    serving = _serving_certificate(cluster, release, webhook_tls)

    ca = _load(bundle)
    serving.verify_directly_issued_by(ca)  # raises if the bundle's CA did not sign it


def test_the_serving_certificate_names_the_service_the_api_server_dials(
    cluster: Cluster, release: Release, webhook_tls: WebhookTLS
) -> None:
    serving = _serving_certificate(cluster, release, webhook_tls)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    service = webhook_tls.service

    assert f"{service['name']}.{service['namespace']}.svc" in names.get_values_for_type(
        x509.DNSName
    )


@pytest.fixture
def webhook_trusting_another_ca(
    cluster: Cluster, namespace: str, webhook_tls: WebhookTLS
) -> Iterator[str]:
    """A second webhook configuration for the same Service, for `namespace` only,
    whose caBundle holds a CA that did not sign the server's certificate."""
    name = unique("e2e-wrong-ca")
    webhook = {
        **webhook_tls.webhook,
        "name": f"{name}.e2e.pod-labeler.test",
        "failurePolicy": "Fail",
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": namespace},
        },
        "objectSelector": {},
        "clientConfig": {
            "service": webhook_tls.service,
            "caBundle": base64.b64encode(CertificateAuthority("unrelated-ca").cert_pem).decode(),
        },
    }
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook],
    }
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(configuration))
    yield name
    cluster.kubectl("delete", "mutatingwebhookconfiguration", name, check=False)


def test_the_api_server_refuses_a_webhook_whose_certificate_the_ca_bundle_does_not_verify(
    cluster: Cluster, namespace: str, webhook_trusting_another_ca: str
) -> None:
    def refusal() -> str | None:
        pod, error = cluster.try_create_pod(namespace)
        return error if pod is None else None

    error = wait_for(refusal, 60, f"{webhook_trusting_another_ca} to refuse Pods")

    assert "x509" in error or "certificate" in error


# --- rotation -----------------------------------------------------------------------


def _served_expiry(cluster: Cluster, service: dict[str, Any]) -> float | None:
    """The serving certificate's notAfter as one replica reports it, read from the
    Service's plain-HTTP `metrics` port through the API server's Service proxy (so it
    works wherever the test runs)."""
    path = (
        f"/api/v1/namespaces/{service['namespace']}/services/"
        f"http:{service['name']}:metrics/proxy/metrics"
    )
    metrics = cluster.kubectl("get", "--raw", path, check=False).stdout
    for line in metrics.splitlines():
        if line.startswith(CERT_EXPIRY_METRIC):
            return float(line.split()[-1])
    return None


def test_certificate_rotation_changes_the_served_certificate_with_no_failed_pod_creation(
    cluster: Cluster, release: Release, namespace: str, webhook_tls: WebhookTLS
) -> None:
    before = _serving_certificate(cluster, release, webhook_tls)
    assert _served_expiry(cluster, webhook_tls.service) == pytest.approx(
        before.not_valid_after_utc.timestamp()
    ), "the webhook should serve the issued certificate before rotation"

    accepted = {release.label_key: {release.label_value}}
    with PodCreationLoad(cluster.kubeconfig, [namespace], accepted, STEADY_RATE) as creation:
        creation.wait_for_more(3)  # under way before the renewal starts
        metadata = webhook_tls.certificate["metadata"]
        cluster.renew_certificate(metadata["namespace"], metadata["name"])

        def renewed() -> x509.Certificate | None:
            current = _serving_certificate(cluster, release, webhook_tls)
            return current if current.serial_number != before.serial_number else None

        after = wait_for(
            renewed,
            120,
            "cert-manager to write a renewed certificate into the Secret",
        )
        new_expiry = after.not_valid_after_utc.timestamp()
        # Every replica must serve the new pair; the Service proxy picks one at random.
        wait_for(
            lambda: all(
                _served_expiry(cluster, webhook_tls.service) == new_expiry for _ in range(6)
            ),
            120,
            "every webhook replica to serve the renewed certificate",
        )
        creation.wait_for_more(3)  # and some more on the new certificate

    assert after.serial_number != before.serial_number
    assert creation.created > 10, "too few Pods were created during rotation to show anything"
    assert creation.failures == []
