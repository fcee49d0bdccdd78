"""`make up` works with a release installed with any label, not only `environment`.

Only on the local control plane (`make up`'s own cluster): the test runs
`python -m localcp up` again, as a developer would after changing the release's
values, and that must find the webhook ready by the release's own label.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cluster import ROOT, Cluster
from tests.e2e.release import Release, upgrade

LOCAL_KUBECONFIG = ROOT / ".cache" / "run" / "kubeconfig"


def test_make_up_finds_the_webhook_ready_with_a_release_installed_with_another_label(
    cluster: Cluster, restore_release: Release
) -> None:
    if Path(cluster.kubeconfig).resolve() != LOCAL_KUBECONFIG.resolve():
        pytest.skip("checks `make up` itself, so only on the local control plane")
    upgrade(cluster, restore_release, "label.key=e2e-up", "label.value=another")

    up = subprocess.run(
        [sys.executable, "-m", "localcp", "up"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert up.returncode == 0, up.stderr[-3000:]
