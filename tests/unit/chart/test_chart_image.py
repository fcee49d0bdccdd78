"""image.digest pins the server's image; the version label comes from the chart's
appVersion, never from the image reference, and every label the chart renders is one
that the API server accepts."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

DIGEST = "sha256:" + "0123456789abcdef" * 4
# Kubernetes label syntax (apimachinery's IsQualifiedName and IsValidLabelValue).
NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


def label_problems(key: str, value: object) -> list[str]:
    """Why the API server would refuse `key: value` as a label; [] if it would not."""
    problems = []
    prefix, _, name = key.rpartition("/")
    if "/" in prefix or (key.count("/") == 1 and not prefix):
        problems.append(f"key {key!r}: at most one `/`, with a prefix before it")
    if prefix and (len(prefix) > 253 or not re.fullmatch(DNS_SUBDOMAIN, prefix)):
        problems.append(f"key {key!r}: the prefix is not a DNS subdomain")
    if len(name) > 63 or not re.fullmatch(NAME, name):
        problems.append(f"key {key!r}: the name is not a label name")
    if not isinstance(value, str):
        problems.append(f"{key}: value {value!r} is not a string")
    elif len(value) > 63 or not re.fullmatch(f"({NAME})?", value):
        problems.append(f"{key}: value {value!r} is not a label value")
    return problems


def label_maps(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every `labels` and `matchLabels` map in a manifest, with where it is."""
    if isinstance(node, dict):
        for key, child in node.items():
            where = f"{path}.{key}"
            if key in ("labels", "matchLabels") and isinstance(child, dict):
                yield where, child
            else:
                yield from label_maps(child, where)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from label_maps(child, f"{path}[{index}]")


def invalid_labels(manifests: Any) -> list[str]:
    return [
        f"{obj['kind']}/{obj['metadata']['name']}{where}: {problem}"
        for obj in manifests
        for where, labels in label_maps(obj)
        for key, value in labels.items()
        for problem in label_problems(key, value)
    ]


def container(manifests: Any) -> dict[str, Any]:
    found: dict[str, Any] = manifests.one("Deployment")["spec"]["template"]["spec"]
    return dict(found["containers"][0])


@pytest.fixture(scope="module")
def chart_with_app_version(tmp_path_factory: pytest.TempPathFactory, chart_dir: Path) -> Any:
    """A copy of the chart whose appVersion is `version`."""

    def copy(version: str) -> Path:
        target = tmp_path_factory.mktemp("chart") / "pod-labeler"
        shutil.copytree(chart_dir, target)
        chart_yaml = target / "Chart.yaml"
        meta = yaml.safe_load(chart_yaml.read_text())
        meta["appVersion"] = version
        chart_yaml.write_text(yaml.safe_dump(meta))
        return target

    return copy


def test_label_check_refuses_what_the_api_server_refuses():
    assert label_problems("example.com/team", "payments") == []
    assert label_problems("app.kubernetes.io/version", "0.1.0@" + DIGEST)
    assert label_problems("bad key!", "x")
    assert label_problems("x", "v" * 64)
    assert label_problems("x", "-leading")


def test_a_digest_pins_the_image_by_digest_alone(render):
    assert container(render(f"image.digest={DIGEST}"))["image"] == (
        f"ghcr.io/pod-labeler/pod-labeler@{DIGEST}"
    )


def test_a_digest_with_a_tag_keeps_the_tag_for_readers(render):
    manifests = render(f"image.digest={DIGEST}", "image.tag=0.1.0")
    assert container(manifests)["image"] == f"ghcr.io/pod-labeler/pod-labeler:0.1.0@{DIGEST}"


def test_the_backfill_hook_job_runs_the_webhooks_image_by_the_same_digest(render):
    manifests = render(f"image.digest={DIGEST}", "backfill.onInstall=true")
    (job,) = manifests.of_kind("Job")

    assert (
        job["spec"]["template"]["spec"]["containers"][0]["image"] == container(manifests)["image"]
    )


@pytest.mark.parametrize(
    "set_args",
    [
        (f"image.digest={DIGEST}",),
        (f"image.digest={DIGEST}", "image.tag=0.1.0"),
        (f"image.tag=0.1.0@{DIGEST}",),
        ("image.tag=latest",),
    ],
    ids=["digest", "tag and digest", "digest inside the tag", "another tag"],
)
def test_the_version_label_is_the_app_version_whatever_the_image_reference(
    render, set_args, app_version
):
    for obj in render(*set_args):
        assert obj["metadata"]["labels"]["app.kubernetes.io/version"] == app_version, obj["kind"]


@pytest.mark.parametrize(
    "set_args",
    [(f"image.digest={DIGEST}",), (f"image.tag=0.1.0@{DIGEST}",)],
    ids=["digest", "digest inside the tag"],
)
@pytest.mark.parametrize("mode", ["webhook", "policy"])
def test_every_label_of_every_manifest_is_valid_when_pinned_by_digest(
    render, policy_api, mode, set_args
):
    manifests = render(f"mode={mode}", *set_args, api_versions=policy_api)
    assert list(manifests)
    assert invalid_labels(manifests) == []


@pytest.mark.parametrize(
    ("app_version", "label"),
    [
        ("1.2.3+build.7", "1.2.3_build.7"),
        ("v2.0.0", "v2.0.0"),
        ("1.0.0-rc.1+" + "x" * 70, ("1.0.0-rc.1_" + "x" * 70)[:63]),
        ("_1.0!", "1.0"),
    ],
)
def test_the_version_label_is_the_app_version_made_a_valid_label_value(
    render, chart_with_app_version, app_version, label
):
    manifests = render(chart=chart_with_app_version(app_version))
    assert {obj["metadata"]["labels"]["app.kubernetes.io/version"] for obj in manifests} == {label}
    assert invalid_labels(manifests) == []


@pytest.mark.parametrize("digest", ["sha256:abc", "0123" * 16, "sha256:" + "0" * 63 + "!"])
def test_a_malformed_digest_fails_the_render_naming_the_field(render_error, digest):
    assert "at '/image/digest'" in render_error(f"image.digest={digest}")
