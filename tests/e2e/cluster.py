"""The e2e suite's only way into the cluster: kubectl and helm against KUBECONFIG.

Everything goes through the API, so the same tests run on the local control plane
(`make up`) and on kind. kubectl's stderr is kept, because that is where it prints
the warnings an admission webhook returns. DEVELOPMENT.md says why
these helpers are ours rather than pytest-helm-charts' or pykube-ng's.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"

T = TypeVar("T")


class CommandFailedError(AssertionError):
    """kubectl or helm exited non-zero; the message carries its stderr."""

    def __init__(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        self.stderr = result.stderr
        super().__init__(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, every: float = 0.5) -> T:
    """Poll until `condition` returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except AssertionError as error:
            last_error = error
        time.sleep(every)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}; last error: {last_error}"
    )


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str

    def _run(self, tool: str, args: list[str], stdin: str | None, check: bool) -> Result:
        argv = [tool, *args]
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, "KUBECONFIG": self.kubeconfig, "PATH": _path()},
            timeout=180,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandFailedError(argv, result)
        return Result(result.stdout, result.stderr)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> Result:
        return self._run("kubectl", list(args), stdin, check)

    def helm(self, *args: str, check: bool = True) -> Result:
        return self._run("helm", list(args), None, check)

    def get(self, *args: str) -> Any:
        return self.kubectl("get", *args, "-o", "json").json()

    def exists(self, *args: str) -> bool:
        result = self.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
        return bool(result.stdout.strip())

    @contextlib.contextmanager
    def fresh_namespace(self, prefix: str = "e2e") -> Iterator[str]:
        """A new namespace, ready for Pods (its default ServiceAccount exists), deleted
        afterwards without waiting."""
        name = unique(prefix)
        self.kubectl("create", "namespace", name)
        try:
            wait_for(
                lambda: self.exists("serviceaccount", "default", "-n", name),
                60,
                f"the default ServiceAccount in {name}",
            )
            yield name
        finally:
            self.kubectl("delete", "namespace", name, "--wait=false", check=False)

    # --- Pods ---------------------------------------------------------------------

    def create_pod(
        self,
        namespace: str,
        labels: dict[str, str] | None = None,
        name: str | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], str]:
        """Create a Pod; returns the object the API server answered with, and kubectl's stderr."""
        args = ["create", "-n", namespace, "-o", "json", "-f", "-"]
        if dry_run:
            args.append("--dry-run=server")
        result = self.kubectl(*args, stdin=json.dumps(pod_manifest(labels, name)))
        return result.json(), result.stderr

    def ready_pods(self, namespace: str, count: int, timeout: float = 120) -> list[dict[str, Any]]:
        """Until `count` Pods in `namespace` run Ready on a node (the kubelet has done
        its status updates, so their resourceVersions stay put); returns them."""

        def all_ready() -> list[dict[str, Any]] | None:
            pods = self.get("pods", "-n", namespace)["items"]
            ready = [p for p in pods if _condition(p, "Ready")]
            return ready if len(ready) == count else None

        return wait_for(all_ready, timeout, f"{count} Ready Pods in {namespace}")

    def try_create_pod(
        self, namespace: str, dry_run: bool = True
    ) -> tuple[dict[str, Any] | None, str]:
        """Like create_pod, but a refusal is an answer: (None, the error) instead of a failure."""
        try:
            return self.create_pod(namespace, dry_run=dry_run)
        except CommandFailedError as refused:
            return None, refused.stderr

    # --- cert-manager -------------------------------------------------------------

    def renew_certificate(self, namespace: str, name: str) -> None:
        """Ask cert-manager to re-issue a Certificate now: `cmctl renew` (make install
        builds it), or where there is no cmctl (the kind CI job) what it does, through
        the API: set the Certificate's Issuing condition."""
        if shutil.which("cmctl", path=_path()):
            self._run("cmctl", ["renew", name, "-n", namespace], None, check=True)
            return
        certificate = self.get("certificate", name, "-n", namespace)
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            c for c in certificate.get("status", {}).get("conditions", []) if c["type"] != "Issuing"
        ]
        conditions.append(
            {
                "type": "Issuing",
                "status": "True",
                "reason": "ManuallyTriggered",
                "message": "Certificate re-issuance requested by the e2e suite",
                "lastTransitionTime": now,
            }
        )
        self.kubectl(
            "patch",
            "certificate",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"conditions": conditions}}),
        )

    def secret_data(self, namespace: str, name: str, key: str) -> bytes:
        secret = self.get("secret", name, "-n", namespace)
        return base64.b64decode(secret["data"][key])


def pod_manifest(labels: dict[str, str] | None = None, name: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": "e2e-"}
    if labels is not None:
        metadata["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [{"name": "pause", "image": PAUSE_IMAGE}],
            "terminationGracePeriodSeconds": 0,
        },
    }


def _condition(obj: dict[str, Any], kind: str) -> bool:
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _path() -> str:
    return os.pathsep.join(
        [str(ROOT / ".cache" / "bin"), str(ROOT / ".venv" / "bin"), os.environ.get("PATH", "")]
    )
