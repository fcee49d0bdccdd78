"""Pods created without pause, in several namespaces, are never refused and always
labelled while, one after another, the webhook is rolled by `helm upgrade`, loses a
Pod, and gets a renewed serving certificate, then a renewed CA.

Exercises: the Deployment controller's rolling update, the EndpointSlice controller
and the API server's choice of endpoint, the server's drain on SIGTERM and its
certificate reload, cert-manager's issuing (`cmctl renew`) and cainjector's caBundle.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509

from tests.e2e import metrics
from tests.e2e.cluster import Cluster, unique, wait_for
from tests.e2e.load import PodCreationLoad
from tests.e2e.release import Release, serving_certificate_of, upgrade, webhook_configuration

CLIENTS = 4
# Pods a second per client: 40/s offered in all, paced so that the control plane
# keeps room to roll and issue on a small machine.
RATE_PER_CLIENT = 10.0
# The rate the issue asks for. It checks the test's own load (too few Pods would
# show nothing), not the product's speed.
MIN_RATE = 20.0
# Creations after each change is complete, before the next one starts.
AFTER_EACH = 60
WAIT = 300.0
# The server's gauge of the loaded certificate's notAfter: scraped from each replica,
# it says which certificate each one serves.
CERT_EXPIRY_METRIC = "pod_labeler_certificate_expiry_timestamp_seconds"


@dataclass(frozen=True)
class ReleaseTLS:
    """The release's certificates (names in its namespace) and its webhook configuration."""

    namespace: str
    serving: str
    ca: str
    webhook_configuration: str


@pytest.fixture
def release_tls(cluster: Cluster, release: Release) -> ReleaseTLS:
    configuration = webhook_configuration(cluster, release)
    _, serving = serving_certificate_of(configuration)
    certificates = cluster.get("certificates", "-n", release.namespace, "-l", release.selector)
    cas = [c["metadata"]["name"] for c in certificates["items"] if c["spec"].get("isCA")]
    if not cas:
        pytest.skip("the release signs with an issuer of its own (certManager.issuerRef)")
    return ReleaseTLS(release.namespace, serving, cas[0], configuration["metadata"]["name"])


# --- the Deployment's Pods ----------------------------------------------------------


def _serving_pods(cluster: Cluster, release: Release) -> list[str] | None:
    """The webhook Pods, if the release runs exactly its replicas, all Ready, none ending."""
    pods = cluster.get("pods", "-n", release.namespace, "-l", release.selector)["items"]
    ready = [
        pod["metadata"]["name"]
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
    ]
    return ready if len(pods) == len(ready) == release.replicas else None


def _wait_until_settled(cluster: Cluster, release: Release, without: str = "") -> list[str]:
    """Until the release runs exactly its replicas, all Ready, and none of them is `without`."""

    def settled() -> list[str] | None:
        pods = _serving_pods(cluster, release)
        return pods if pods is not None and without not in pods else None

    gone = f", {without} gone" if without else ""
    return wait_for(settled, WAIT, f"{release.replicas} Ready webhook Pods and no other{gone}")


def _roll(cluster: Cluster, release: Release, _: ReleaseTLS) -> None:
    """A rolling `helm upgrade`: a new Pod annotation changes the Pod template."""
    upgrade(cluster, release, f"podAnnotations.e2e-rollout={unique('roll')}")
    _wait_until_settled(cluster, release)


def _delete_one_pod(cluster: Cluster, release: Release, _: ReleaseTLS) -> None:
    victim = _wait_until_settled(cluster, release)[0]
    cluster.kubectl("delete", "pod", victim, "-n", release.namespace, "--wait=false")
    _wait_until_settled(cluster, release, without=victim)


# --- certificates -------------------------------------------------------------------


def _certificate(cluster: Cluster, tls: ReleaseTLS, name: str) -> dict[str, Any]:
    certificate: dict[str, Any] = cluster.get("certificate", name, "-n", tls.namespace)
    return certificate


def _secret_certificate(cluster: Cluster, tls: ReleaseTLS, name: str, key: str) -> x509.Certificate:
    secret_name = _certificate(cluster, tls, name)["spec"]["secretName"]
    return x509.load_pem_x509_certificate(cluster.secret_data(tls.namespace, secret_name, key))


def _renew(cluster: Cluster, tls: ReleaseTLS, name: str) -> x509.Certificate:
    """`cmctl renew`, then wait until cert-manager has issued: Ready at a later revision.
    Returns the new certificate."""
    before = _certificate(cluster, tls, name).get("status", {}).get("revision", 0)
    cluster.renew_certificate(tls.namespace, name)

    def issued() -> bool:
        status = _certificate(cluster, tls, name).get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return bool(
            status.get("revision", 0) > before
            and conditions.get("Ready") == "True"
            and conditions.get("Issuing") != "True"
        )

    wait_for(issued, WAIT, f"Certificate {name} re-issued after revision {before} and Ready")
    return _secret_certificate(cluster, tls, name, "tls.crt")


def _ca_bundle(cluster: Cluster, tls: ReleaseTLS) -> list[x509.Certificate]:
    configuration = cluster.get("mutatingwebhookconfiguration", tls.webhook_configuration)
    bundle = base64.b64decode(configuration["webhooks"][0]["clientConfig"].get("caBundle", ""))
    return x509.load_pem_x509_certificates(bundle) if bundle else []


def _wait_until_every_replica_serves(
    cluster: Cluster, release: Release, certificate: x509.Certificate
) -> None:
    expiry = certificate.not_valid_after_utc.timestamp()

    def every_replica_serves() -> bool:
        if _serving_pods(cluster, release) is None:  # a replica is starting or ending
            return False
        served = [s.get(CERT_EXPIRY_METRIC) for s in metrics.per_replica(cluster, release).values()]
        return len(served) == release.replicas and all(
            s is not None and abs(s - expiry) < 1 for s in served
        )

    wait_for(every_replica_serves, WAIT, f"every webhook replica to serve the cert of {expiry}")


def _renew_the_serving_certificate(cluster: Cluster, release: Release, tls: ReleaseTLS) -> None:
    before = _secret_certificate(cluster, tls, tls.serving, "tls.crt")
    after = _renew(cluster, tls, tls.serving)
    assert after.serial_number != before.serial_number
    _wait_until_every_replica_serves(cluster, release, after)


def _renew_the_ca(cluster: Cluster, release: Release, tls: ReleaseTLS) -> None:
    before = _secret_certificate(cluster, tls, tls.ca, "tls.crt")
    ca = _renew(cluster, tls, tls.ca)
    assert ca.serial_number != before.serial_number
    # cert-manager re-issues nothing a renewed CA signed before: the serving
    # certificate (and, through its Secret's ca.crt, the caBundle) moves to the new
    # CA at its own next issuance, forced here as an operator rotating the CA would.
    serving = _renew(cluster, tls, tls.serving)
    assert _secret_certificate(cluster, tls, tls.serving, "ca.crt") == ca
    wait_for(lambda: ca in _ca_bundle(cluster, tls), WAIT, "cainjector to put the new CA in")
    _wait_until_every_replica_serves(cluster, release, serving)


# One after another, each under the load.
CHANGES: list[tuple[str, Callable[[Cluster, Release, ReleaseTLS], None]]] = [
    ("rolling helm upgrade", _roll),
    ("one webhook Pod deleted", _delete_one_pod),
    ("serving certificate renewed", _renew_the_serving_certificate),
    ("CA renewed", _renew_the_ca),
]


# --- the test -----------------------------------------------------------------------


def test_continuous_pod_creation_survives_a_rollout_a_lost_pod_and_both_certificate_renewals(
    cluster: Cluster,
    namespace: str,
    restore_release: Release,
    release_tls: ReleaseTLS,
) -> None:
    release = restore_release
    with contextlib.ExitStack() as namespaces:
        names = [namespace] + [
            namespaces.enter_context(cluster.fresh_namespace()) for _ in range(CLIENTS - 1)
        ]
        accepted = {key: {value} for key, value in release.original_labels.items()}
        with PodCreationLoad(cluster.kubeconfig, names, accepted, RATE_PER_CLIENT) as load:
            load.wait_for_more(AFTER_EACH)
            for name, change in CHANGES:
                with load.phase(name):
                    change(cluster, release, release_tls)
                    load.wait_for_more(AFTER_EACH)
    print("\n".join(str(phase) for phase in load.phases))

    phases = load.phases[1:]
    assert [p.name for p in phases] == [name for name, _ in CHANGES]
    assert {p.name: p.refused for p in phases} == {p.name: [] for p in phases}
    assert {p.name: p.unlabelled for p in phases} == {p.name: [] for p in phases}
    assert load.rate >= MIN_RATE, f"the test's own load fell to {load.rate:.1f} Pods/s"
