"""cert-manager objects: the chart's own CA by default, or an existing issuer."""

from __future__ import annotations

from typing import Any

import pytest

EXISTING_ISSUER = (
    "certManager.issuerRef.name=corp-ca",
    "certManager.issuerRef.kind=ClusterIssuer",
)


def serving_certificate(manifests: Any) -> dict[str, Any]:
    annotation = manifests.one("MutatingWebhookConfiguration")["metadata"]["annotations"][
        "cert-manager.io/inject-ca-from"
    ]
    certificate: dict[str, Any] = manifests.get("Certificate", annotation.split("/")[1])
    return certificate


@pytest.mark.parametrize(
    ("set_args", "namespace"),
    [
        ((), "pod-labeler"),
        ((), "platform-system"),
        (("fullnameOverride=labeller",), "pod-labeler"),
        (EXISTING_ISSUER, "pod-labeler"),
    ],
    ids=["default", "other namespace", "fullnameOverride", "existing issuer"],
)
def test_serving_certificate_covers_the_service_the_webhook_calls(render, set_args, namespace):
    manifests = render(*set_args, namespace=namespace)
    service = manifests.one("MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"][
        "service"
    ]
    name, ns = service["name"], service["namespace"]
    service_metadata = manifests.one("Service")["metadata"]
    assert (service_metadata["name"], service_metadata["namespace"]) == (name, ns)
    assert serving_certificate(manifests)["spec"]["dnsNames"] == [
        name,
        f"{name}.{ns}",
        f"{name}.{ns}.svc",
        f"{name}.{ns}.svc.cluster.local",
    ]


def test_deployment_mounts_the_secret_the_serving_certificate_writes(render):
    manifests = render()
    pod = manifests.one("Deployment")["spec"]["template"]["spec"]
    tls_mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/tls")
    volume = next(v for v in pod["volumes"] if v["name"] == tls_mount["name"])
    assert volume["secret"]["secretName"] == serving_certificate(manifests)["spec"]["secretName"]
    assert tls_mount["readOnly"] is True


def test_self_signed_issuer_signs_only_the_ca_certificate(render):
    manifests = render()
    self_signed = manifests.get("Issuer", "webhook-pod-labeler-selfsigned")
    assert self_signed["spec"] == {"selfSigned": {}}
    ca = manifests.get("Certificate", "webhook-pod-labeler-ca")
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["issuerRef"] == {
        "name": "webhook-pod-labeler-selfsigned",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }


def test_ca_key_is_kept_across_renewals_so_what_it_signed_stays_trusted(render):
    ca = render().get("Certificate", "webhook-pod-labeler-ca")
    assert ca["spec"]["privateKey"]["rotationPolicy"] == "Never"


def test_ca_common_name_fits_the_x509_limit_for_the_longest_release_name(render):
    ca = render(release="r" * 53).get("Certificate", f"{'r' * 53}-pod-label-ca")
    assert len(ca["spec"]["commonName"]) <= 64


def test_ca_issuer_signs_with_the_ca_certificate_secret(render):
    manifests = render()
    ca = manifests.get("Certificate", "webhook-pod-labeler-ca")
    assert manifests.get("Issuer", "webhook-pod-labeler-ca")["spec"] == {
        "ca": {"secretName": ca["spec"]["secretName"]}
    }


def test_serving_certificate_is_signed_by_the_chart_ca_issuer(render):
    assert serving_certificate(render())["spec"]["issuerRef"] == {
        "name": "webhook-pod-labeler-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }


def test_existing_issuer_signs_the_serving_certificate(render):
    assert serving_certificate(render(*EXISTING_ISSUER))["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_existing_issuer_leaves_out_the_chart_ca(render):
    manifests = render(*EXISTING_ISSUER)
    assert manifests.names("Issuer") == set()
    assert manifests.names("Certificate") == {"webhook-pod-labeler-tls"}


def test_serving_certificate_is_a_server_certificate_not_a_ca(render):
    spec = serving_certificate(render())["spec"]
    assert not spec.get("isCA", False)
    assert "server auth" in spec["usages"]


def test_serving_key_is_replaced_on_every_renewal(render):
    assert serving_certificate(render())["spec"]["privateKey"]["rotationPolicy"] == "Always"


def test_certificate_lifetimes_have_defaults(render):
    manifests = render()
    serving = serving_certificate(manifests)["spec"]
    ca = manifests.get("Certificate", "webhook-pod-labeler-ca")["spec"]
    assert (serving["duration"], serving["renewBefore"]) == ("2160h", "360h")
    assert (ca["duration"], ca["renewBefore"]) == ("43800h", "720h")


def test_certificate_lifetimes_are_configurable(render):
    manifests = render(
        "certManager.duration=720h",
        "certManager.renewBefore=240h",
        "certManager.ca.duration=8760h",
        "certManager.ca.renewBefore=1440h",
    )
    serving = serving_certificate(manifests)["spec"]
    ca = manifests.get("Certificate", "webhook-pod-labeler-ca")["spec"]
    assert (serving["duration"], serving["renewBefore"]) == ("720h", "240h")
    assert (ca["duration"], ca["renewBefore"]) == ("8760h", "1440h")


@pytest.mark.parametrize(
    ("set_arg", "field"),
    [
        ("certManager.duration=90d", "/certManager/duration"),
        ("certManager.ca.renewBefore=soon", "/certManager/ca/renewBefore"),
        ("certManager.issuerRef.name=Not An Issuer", "/certManager/issuerRef/name"),
        ("certManager.issuerRef.kind=", "/certManager/issuerRef/kind"),
    ],
)
def test_bad_cert_manager_settings_fail_the_render(render_error, set_arg, field):
    assert f"at '{field}'" in render_error(set_arg)


# ---- the Secrets belong to the release --------------------------------------------------


def certificate_secrets(manifests: Any) -> set[str]:
    return {cert["spec"]["secretName"] for cert in manifests.of_kind("Certificate")}


@pytest.mark.parametrize("set_args", [(), EXISTING_ISSUER], ids=["own CA", "existing issuer"])
def test_the_chart_declares_every_secret_its_certificates_write_so_uninstall_deletes_them(
    render, set_args
):
    manifests = render(*set_args)
    assert manifests.names("Secret") == certificate_secrets(manifests)


def test_the_ca_secret_with_its_private_key_is_declared_by_the_chart(render):
    assert "webhook-pod-labeler-ca" in render().names("Secret")


def test_the_declared_secrets_name_no_data_so_helm_upgrade_never_touches_what_cert_manager_wrote(
    render,
):
    for secret in render().of_kind("Secret"):
        assert set(secret) == {"apiVersion", "kind", "metadata", "type"}, secret["metadata"]
        # kubernetes.io/tls would require tls.crt and tls.key in the manifest, and
        # helm's three-way merge would then reset them to empty on every upgrade.
        assert secret["type"] == "Opaque"


def test_policy_mode_declares_no_secret(render, policy_api):
    assert render("mode=policy", api_versions=policy_api).names("Secret") == set()


def test_the_pod_waits_for_the_certificate_keys_rather_than_start_without_them(render):
    pod = render().one("Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert volume["secret"]["items"] == [
        {"key": "tls.crt", "path": "tls.crt"},
        {"key": "tls.key", "path": "tls.key"},
    ]
    assert "optional" not in volume["secret"]
