"""The serving certificate: loaded at start, reloaded when the mounted files change.

kubelet updates a mounted Secret by swapping a `..data` symlink, which file-event
watchers miss, so this polls a hash of the two files (as kopf does; controller-runtime's
certwatcher adds a 10 s poll to fsnotify for the same reason). A pair that fails to load
(half-written, or a new certificate with the old key) never replaces a good one: the
old context keeps serving, and the failure is logged once, not every poll.

The current context is one attribute: the front reads it for each new connection, so a
reload is a reference swap and needs no lock.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
from datetime import datetime
from pathlib import Path

from cryptography import x509

from app.config import ConfigError
from app.logs import fields
from app.metrics import Metrics

log = logging.getLogger("pod_labeler.certificates")

STOP_TIMEOUT = 5.0


class CertificateError(ConfigError):
    """The certificate/key pair cannot be loaded; the message says which files and why."""


class EncryptedKeyError(Exception):
    """Raised from OpenSSL's password callback instead of letting it prompt on a terminal."""


def _refuse_passphrase() -> str:
    raise EncryptedKeyError("the private key is encrypted; the server takes only unencrypted keys")


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Client-initiated TLS 1.2 renegotiation only costs us CPU.
    context.options |= ssl.OP_NO_RENEGOTIATION
    # Go's client (the API server) offers h2 first; waitress speaks HTTP/1.1 only.
    context.set_alpn_protocols(["http/1.1"])
    # Without a password callback, OpenSSL asks for the passphrase on the terminal.
    context.load_cert_chain(cert_path, key_path, password=_refuse_passphrase)
    return context


def not_after(cert_pem: bytes) -> datetime | None:
    """notAfter of the first certificate in a PEM file (the serving one), if it parses."""
    try:
        return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
    except ValueError:
        return None


class CertificateWatcher:
    """Holds the current SSLContext and replaces it when the files change."""

    def __init__(
        self,
        cert_path: Path,
        key_path: Path,
        *,
        interval: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.cert_path, self.key_path = cert_path, key_path
        self.interval = interval
        self._metrics = metrics
        self._context: ssl.SSLContext | None = None
        self._loaded: str | None = None
        self._failed: str | None = None
        self._read_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def context(self) -> ssl.SSLContext:
        context = self._context
        if context is None:
            raise RuntimeError("no certificate has been loaded")
        return context

    @property
    def loaded(self) -> bool:
        return self._context is not None

    def load(self) -> None:
        """The first load, at startup: failing is fatal, so it raises."""
        cert_pem, key_pem = self._read()
        try:
            self._install(server_context(self.cert_path, self.key_path), cert_pem, key_pem)
        except (OSError, ValueError, EncryptedKeyError) as error:  # ssl.SSLError is an OSError
            raise CertificateError(
                f"cannot load TLS certificate {str(self.cert_path)!r} "
                f"with key {str(self.key_path)!r}: {error}"
            ) from error

    def check(self) -> bool:
        """Poll once; True when a new pair was loaded and swapped in."""
        try:
            cert_pem, key_pem = self._read()
        except CertificateError as error:
            if str(error) != self._read_error:
                self._read_error = str(error)
                log.warning("keeping the current certificate", extra=fields(error=str(error)))
            return False
        self._read_error = None
        digest = _digest(cert_pem, key_pem)
        if digest in (self._loaded, self._failed):
            return False
        try:
            context = server_context(self.cert_path, self.key_path)
        except (OSError, ValueError, EncryptedKeyError) as error:
            self._failed = digest
            self._count("failure")
            log.warning(
                "certificate files changed but do not load; keeping the current certificate",
                extra=fields(cert=str(self.cert_path), key=str(self.key_path), error=str(error)),
            )
            return False
        self._install(context, cert_pem, key_pem)
        self._count("success")
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="certificates", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def _read(self) -> tuple[bytes, bytes]:
        try:
            return self.cert_path.read_bytes(), self.key_path.read_bytes()
        except OSError as error:
            raise CertificateError(f"cannot read the certificate files: {error}") from error

    def _count(self, result: str) -> None:
        if self._metrics:
            self._metrics.certificate_reloads.labels(result=result).inc()

    def _install(self, context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
        digest = _digest(cert_pem, key_pem)
        self._context, self._loaded, self._failed = context, digest, None
        expiry = not_after(cert_pem)
        if self._metrics and expiry is not None:
            self._metrics.certificate_expiry.set(expiry.timestamp())
        log.info(
            "certificate loaded",
            extra=fields(
                cert=str(self.cert_path),
                sha256=digest[:16],
                not_after=expiry.strftime("%Y-%m-%dT%H:%M:%SZ") if expiry else None,
            ),
        )


def _digest(cert_pem: bytes, key_pem: bytes) -> str:
    return hashlib.sha256(cert_pem + b"\0" + key_pem).hexdigest()
