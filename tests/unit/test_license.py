"""One licence, said the same way everywhere: LICENSE holds the Apache License 2.0 text,
and the image's label, the chart's Artifact Hub annotation, the chart README and the
Python package name it by its SPDX id."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.unit.tooling import ROOT

LICENSE = ROOT / "LICENSE"
# The SPDX id of each licence text LICENSE may hold, by its first two lines.
SPDX_BY_HEADING = {("Apache License", "Version 2.0, January 2004"): "Apache-2.0"}
# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt: the text is shipped
# unmodified (the copyright notice belongs in the files, not in LICENSE).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def license_spdx() -> str:
    heading = tuple(line.strip() for line in LICENSE.read_text().strip().splitlines()[:2])
    assert heading in SPDX_BY_HEADING, f"LICENSE starts with an unknown licence: {heading}"
    return SPDX_BY_HEADING[heading]


def image_label() -> str:
    match = re.search(
        r'org\.opencontainers\.image\.licenses="([^"]+)"', (ROOT / "Dockerfile").read_text()
    )
    assert match, "the Dockerfile has no org.opencontainers.image.licenses label"
    return match[1]


def chart_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())
    return loaded


def chart_annotation() -> str:
    return str(chart_yaml()["annotations"]["artifacthub.io/license"])


def python_package() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"])


def test_license_is_the_unmodified_apache_2_text() -> None:
    assert license_spdx() == "Apache-2.0"
    assert hashlib.sha256(LICENSE.read_bytes()).hexdigest() == APACHE_2_SHA256, (
        "LICENSE differs from https://www.apache.org/licenses/LICENSE-2.0.txt"
    )


@pytest.mark.parametrize("declared", [image_label, chart_annotation, python_package])
def test_each_declared_licence_is_the_one_in_license(declared: Callable[[], str]) -> None:
    assert declared() == license_spdx()


def test_the_chart_readme_names_the_licence_and_links_the_license_file() -> None:
    """An absolute link: the README is also shown on Artifact Hub, outside the repository."""
    readme = (ROOT / "chart" / "README.md").read_text()
    (section,) = re.findall(r"\n## License\n(.*?)(?=\n## |\Z)", readme, re.S)
    assert f"`{license_spdx()}`" in section
    assert f"]({chart_yaml()['home']}/blob/main/LICENSE)" in section
