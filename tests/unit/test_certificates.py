"""CertificateWatcher: a changed pair is swapped in; a broken one never replaces a good one."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry

from app.certificates import CertificateError, CertificateWatcher, not_after
from app.metrics import Metrics
from tests.certs import CertificateAuthority, KeyPair
from tests.unit.conftest import MountedSecret, sample


@pytest.fixture
def reloader(secret: MountedSecret, metrics: Metrics) -> CertificateWatcher:
    loaded = CertificateWatcher(secret.cert_path, secret.key_path, metrics=metrics)
    loaded.load()
    return loaded


def test_the_expiry_metric_is_the_certificates_not_after(
    reloader: CertificateWatcher, metrics: Metrics, first_pair: KeyPair
) -> None:
    expiry = sample(metrics, "pod_labeler_certificate_expiry_timestamp_seconds")

    assert expiry == first_pair.not_after.timestamp()


def test_not_after_is_read_from_the_first_certificate_in_the_file(
    secret: MountedSecret, first_pair: KeyPair, ca: CertificateAuthority
) -> None:
    secret.write(first_pair.cert_pem + ca.cert_pem, first_pair.key_pem)

    expiry = not_after(secret.cert_path.read_bytes())

    assert expiry is not None
    assert expiry.timestamp() == first_pair.not_after.timestamp()


def test_unchanged_files_are_not_reloaded(reloader: CertificateWatcher, metrics: Metrics) -> None:
    context = reloader.context

    assert reloader.check() is False
    assert reloader.context is context
    assert sample(metrics, "pod_labeler_certificate_reloads_total", result="success") == 0


def test_a_kubelet_style_secret_update_swaps_in_a_new_context(
    reloader: CertificateWatcher,
    metrics: Metrics,
    secret: MountedSecret,
    second_pair: KeyPair,
) -> None:
    old = reloader.context

    secret.install(second_pair)

    assert reloader.check() is True
    assert reloader.context is not old
    assert sample(metrics, "pod_labeler_certificate_reloads_total", result="success") == 1
    expiry = sample(metrics, "pod_labeler_certificate_expiry_timestamp_seconds")
    assert expiry == second_pair.not_after.timestamp()


def test_a_mismatched_pair_keeps_the_old_context_and_logs_why(
    reloader: CertificateWatcher,
    metrics: Metrics,
    secret: MountedSecret,
    first_pair: KeyPair,
    second_pair: KeyPair,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = reloader.context

    secret.write(second_pair.cert_pem, first_pair.key_pem)

    assert reloader.check() is False
    assert reloader.context is old
    assert sample(metrics, "pod_labeler_certificate_reloads_total", result="failure") == 1
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "key values mismatch" in record.__dict__["fields"]["error"]


def test_a_half_written_certificate_keeps_the_old_context(
    reloader: CertificateWatcher, secret: MountedSecret, second_pair: KeyPair
) -> None:
    old = reloader.context

    secret.write(second_pair.cert_pem[: len(second_pair.cert_pem) // 2], second_pair.key_pem)

    assert reloader.check() is False
    assert reloader.context is old


def test_a_pair_that_failed_is_not_retried_until_the_files_change(
    reloader: CertificateWatcher,
    metrics: Metrics,
    secret: MountedSecret,
    first_pair: KeyPair,
    second_pair: KeyPair,
) -> None:
    secret.write(second_pair.cert_pem, first_pair.key_pem)
    reloader.check()
    reloader.check()

    assert sample(metrics, "pod_labeler_certificate_reloads_total", result="failure") == 1

    secret.install(second_pair)

    assert reloader.check() is True


def test_missing_files_keep_the_old_context(
    reloader: CertificateWatcher, secret: MountedSecret
) -> None:
    old = reloader.context
    secret.key_path.unlink()

    assert reloader.check() is False
    assert reloader.context is old


def test_a_bad_pair_at_startup_raises_naming_both_files(
    secret: MountedSecret, first_pair: KeyPair, second_pair: KeyPair
) -> None:
    secret.write(second_pair.cert_pem, first_pair.key_pem)
    reloader = CertificateWatcher(
        secret.cert_path, secret.key_path, metrics=Metrics(CollectorRegistry())
    )

    with pytest.raises(CertificateError, match=r"tls\.crt.*tls\.key"):
        reloader.load()
    assert not reloader.loaded


def test_a_key_that_needs_a_passphrase_fails_with_a_clear_error_and_never_prompts(
    secret: MountedSecret, first_pair: KeyPair
) -> None:
    key = serialization.load_pem_private_key(first_pair.key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    secret.write(first_pair.cert_pem, encrypted)
    watcher = CertificateWatcher(secret.cert_path, secret.key_path)

    with pytest.raises(CertificateError, match="the private key is encrypted"):
        watcher.load()


def test_stopping_the_watcher_returns_even_if_it_was_never_started(
    secret: MountedSecret,
) -> None:
    CertificateWatcher(secret.cert_path, secret.key_path).stop()
