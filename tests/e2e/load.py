"""Pods created continuously through the API, from several keep-alive clients at once,
while a test changes the cluster; every answer is kept, by phase.

kubectl starts a process per call (a few creates a second at best), so the load
goes straight to the API server: one `http.client` connection per client thread,
kept alive, as the kubeconfig's current user (a token or a client certificate, so
the same code runs on the local control plane and on kind). The Pods are server-side
dry runs: the whole admission chain runs, webhook included, and nothing is stored.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.e2e.cluster import pod_manifest, wait_for

# Pods per second that one client creates while a test changes the cluster: enough
# for every change to meet many creations, few enough to leave the machine its room.
STEADY_RATE = 20.0


class ApiClient:
    """One keep-alive HTTPS connection to the API server of a kubeconfig's current context."""

    def __init__(self, kubeconfig: str, timeout: float = 30.0) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        context = _named(config["contexts"], config.get("current-context"))["context"]
        cluster = _named(config["clusters"], context["cluster"])["cluster"]
        user = _named(config.get("users") or [], context.get("user"))["user"]
        url = urlsplit(cluster["server"])
        if url.scheme != "https" or not url.hostname:
            raise AssertionError(f"not an https API server: {url.geturl()}")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if "token" in user:
            self.headers["Authorization"] = f"Bearer {user['token']}"
        elif "tokenFile" in user:
            self.headers["Authorization"] = f"Bearer {Path(user['tokenFile']).read_text().strip()}"
        self.connection = http.client.HTTPSConnection(
            url.hostname, url.port or 443, context=_ssl_context(cluster, user), timeout=timeout
        )

    def create_pod(self, namespace: str, *, dry_run: bool = True) -> tuple[int, dict[str, Any]]:
        """POST a Pod; returns the status code and the decoded body (the Pod, or a Status)."""
        query = "?dryRun=All" if dry_run else ""
        self.connection.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods{query}",
            body=json.dumps(pod_manifest()),
            headers=self.headers,
        )
        response = self.connection.getresponse()
        body = response.read()
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = {"message": body[:200].decode(errors="replace")}
        return response.status, decoded if isinstance(decoded, dict) else {}

    def close(self) -> None:
        self.connection.close()


def _named(items: list[dict[str, Any]], name: str | None) -> dict[str, Any]:
    """The kubeconfig entry called `name` (the first one when no name is given)."""
    for item in items:
        if name is None or item.get("name") == name:
            return item
    raise AssertionError(f"kubeconfig has no entry named {name!r}")


def _ssl_context(cluster: dict[str, Any], user: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif "certificate-authority-data" in cluster:
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        context.load_verify_locations(cadata=ca)
    elif "certificate-authority" in cluster:
        context.load_verify_locations(cafile=cluster["certificate-authority"])
    if "client-certificate-data" in user:
        # load_cert_chain reads files only: write the pair to a private directory
        # for the duration of the call.
        with tempfile.TemporaryDirectory() as directory:
            cert, key = Path(directory, "tls.crt"), Path(directory, "tls.key")
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.touch(mode=0o600)
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            context.load_cert_chain(cert, key)
    elif "client-certificate" in user:
        context.load_cert_chain(user["client-certificate"], user["client-key"])
    return context


@dataclass
class Phase:
    """What the clients got while one change was made to the cluster."""

    name: str
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    created: int = 0
    refused: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.created} Pods in {self.seconds:.0f}s "
            f"({self.created / self.seconds:.0f}/s), {len(self.refused)} refused, "
            f"{len(self.unlabelled)} unlabelled"
        )


class PodCreationLoad:
    """`len(namespaces)` threads, each with its own client and namespace, creating Pods
    at `rate` per second each (paced, never faster, so a busy machine keeps room for
    the control plane), and checking that each comes back labelled: for each key of
    `accepted`, with one of its values.

    Answers count toward the phase in progress when the request was sent; the
    time before the first `phase()` is a phase of its own, "warm-up".
    """

    def __init__(
        self,
        kubeconfig: str,
        namespaces: list[str],
        accepted: dict[str, set[str]],
        rate: float,
    ) -> None:
        self.kubeconfig, self.accepted, self.interval = kubeconfig, accepted, 1.0 / rate
        self.phases = [Phase("warm-up")]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(namespace,), daemon=True)
            for namespace in namespaces
        ]
        self._started = 0.0
        self._stopped: float | None = None

    @property
    def created(self) -> int:
        return sum(phase.created for phase in self.phases)

    @property
    def failures(self) -> list[str]:
        """Every refusal and every Pod not labelled as accepted, in every phase."""
        return [failure for phase in self.phases for failure in phase.refused + phase.unlabelled]

    @property
    def rate(self) -> float:
        """Pods created per second on average, from start to stop."""
        return self.created / ((self._stopped or time.monotonic()) - self._started)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        with self._lock:
            self.phases[-1].ended = time.monotonic()
            current = Phase(name)
            self.phases.append(current)
        yield current

    def wait_for_more(self, count: int, timeout: float = 120.0) -> None:
        """Until `count` more Pods have been created from now."""
        target = self.created + count
        wait_for(lambda: self.created >= target, timeout, f"{count} more Pod creations", 0.1)

    def _run(self, namespace: str) -> None:
        client = ApiClient(self.kubeconfig)
        next_at = time.monotonic()
        while not self._stop.is_set():
            phase = self.phases[-1]
            refused = unlabelled = None
            try:
                status, body = client.create_pod(namespace)
            except (OSError, http.client.HTTPException) as error:
                refused = f"{namespace}: no answer: {error!r}"
                client.close()  # the next request opens a new connection
            else:
                labels = (body.get("metadata") or {}).get("labels") or {}
                if status != 201:
                    refused = f"{namespace}: {status} {body.get('message')}"
                elif any(labels.get(key) not in values for key, values in self.accepted.items()):
                    unlabelled = f"{namespace}: {labels}"
            with self._lock:
                phase.created += 1
                if refused:
                    phase.refused.append(refused)
                if unlabelled:
                    phase.unlabelled.append(unlabelled)
            # Paced: late requests are not made up for with a burst.
            next_at = max(next_at + self.interval, time.monotonic())
            self._stop.wait(next_at - time.monotonic())
        client.close()

    def __enter__(self) -> PodCreationLoad:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self._stopped = time.monotonic()
        self.phases[-1].ended = self._stopped
