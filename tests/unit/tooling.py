"""What the unit tests share about the project's pinned tools: versions.env and the tools
hack/install.sh builds (helm, promtool)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "versions.env"


def pinned(name: str) -> str:
    """A NAME=value line of versions.env."""
    for line in VERSIONS.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    pytest.fail(f"{name} is missing from {VERSIONS.name}")


def find_tool(name: str) -> str:
    """A pinned tool that `make install` builds into .cache/bin, else one on PATH; never a skip."""
    built = ROOT / ".cache" / "bin" / name
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is neither in {built.parent} nor on PATH: run `make install`")
    return found


def find_helm() -> str:
    """The pinned helm."""
    return find_tool("helm")
