"""kubectl and helm, as the local control plane's admin."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from localcp.layout import BIN, FILES


def _env() -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(FILES.kubeconfig)}


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        [str(BIN / "kubectl"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def get_json(*args: str) -> dict[str, Any] | None:
    """`kubectl get ... -o json`, or None when the object does not exist."""
    result = subprocess.run(
        [str(BIN / "kubectl"), "get", *args, "-o", "json"],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise RuntimeError(f"kubectl get {' '.join(args)} failed: {result.stderr.strip()}")
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def apply(manifest: dict[str, Any] | str, server_side: bool = True) -> None:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    args = ["apply", "-f", "-"]
    if server_side:
        args += ["--server-side", "--force-conflicts", "--field-manager=localcp"]
    kubectl(*args, stdin=text)


def helm(*args: str) -> str:
    result = subprocess.run(
        [str(BIN / "helm"), *args], capture_output=True, text=True, env=_env(), check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout
