"""kubectl and helm, as the local control plane's admin, each call with a time limit."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from localcp.layout import BIN, FILES

# Long enough for a helm upgrade on a busy 2-core machine; a hung call must not
# hang `make up` or `make down` for good.
TIMEOUT_SECONDS = 120


class CommandError(RuntimeError):
    """kubectl or helm exited non-zero; the message carries its stderr."""

    def __init__(self, argv: list[str], stderr: str) -> None:
        self.stderr = stderr
        super().__init__(f"{' '.join(argv)} failed: {stderr.strip()}")


def _run(tool: str, args: tuple[str, ...], stdin: str | None, check: bool) -> str:
    argv = [str(BIN / tool), *args]
    result = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(FILES.kubeconfig)},
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if check and result.returncode != 0:
        raise CommandError(argv, result.stderr)
    return result.stdout


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    return _run("kubectl", args, stdin, check)


def helm(*args: str) -> str:
    return _run("helm", args, None, check=True)


def get_json(*args: str) -> dict[str, Any] | None:
    """`kubectl get ... -o json`, or None when the object does not exist."""
    try:
        out = kubectl("get", *args, "-o", "json")
    except CommandError as error:
        if "NotFound" in error.stderr:
            return None
        raise
    loaded: dict[str, Any] = json.loads(out)
    return loaded


def apply(manifest: dict[str, Any] | str) -> None:
    """Server-side apply, as the local control plane's own field manager."""
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=localcp",
        "-f",
        "-",
        stdin=text,
    )
