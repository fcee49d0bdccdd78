"""The webhook's image, built with podman from the project's own Dockerfile.

Its tag is a digest of everything that goes into it (the Dockerfile, the files the
build context lets in, and the base image's ID), so `make up` builds only when one
of them changed, and a changed `app/` gives a new tag: the chart's Pod template
changes and the Deployment rolls, as a new release would on a real cluster.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from localcp.layout import IMAGE_REPOSITORY, ROOT
from localcp.node import PODMAN_CONF

# The Dockerfile's build context is an allow-list (.dockerignore); these are its
# entries, and the patterns it then excludes again.
CONTEXT = ("app", "requirements.txt", "constraints.txt")
EXCLUDED = ("*/__pycache__/*", "*.pyc", "*.pyo", "*.pyd")


def _podman(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        capture_output=capture,
        text=True,
        check=False,
        env={**os.environ, "CONTAINERS_CONF": str(PODMAN_CONF)},
    )


def _context_files(root: Path) -> list[Path]:
    files = []
    for entry in CONTEXT:
        path = root / entry
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [
            f
            for f in candidates
            if f.is_file()
            and not any(fnmatch.fnmatch(f.relative_to(root).as_posix(), p) for p in EXCLUDED)
        ]
    return files


def base_image_id(base: str) -> str:
    found = _podman("image", "inspect", "--format", "{{.Id}}", base)
    if found.returncode != 0:
        raise SystemExit(f"base image {base} is missing: run `make install`")
    return found.stdout.strip()


def tag_for(base_id: str, root: Path = ROOT) -> str:
    """A digest of the base image's ID, the Dockerfile and the build context."""
    digest = hashlib.sha256()
    digest.update(base_id.encode())
    for path in [root / "Dockerfile", *_context_files(root)]:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_built(base: str) -> str:
    """The image's full name, built first unless podman already has it."""
    name = f"{IMAGE_REPOSITORY}:{tag_for(base_image_id(base))}"
    if _podman("image", "exists", name).returncode == 0:
        return name
    print(f"[localcp] podman build -t {name} (base {base})", file=sys.stderr, flush=True)
    # --network=host: the RUN step's pip reaches the package index as the host does,
    # and podman adds no network of its own (no bridge, no iptables rules).
    built = _podman(
        "build",
        "--network=host",
        f"--build-arg=BASE={base}",
        "-t",
        name,
        str(ROOT),
        capture=False,
    )
    if built.returncode != 0:
        raise SystemExit(f"podman build of {name} failed (its output is above)")
    return name


def remove_older(keep: str) -> None:
    """podman's older builds of the webhook's image."""
    listed = _podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPOSITORY)
    for name in listed.stdout.split():
        if name != keep:
            _podman("rmi", "--force", name)
