"""The container image, the chart that runs it and the kind cluster that tests it agree.

No Docker here: the Dockerfile's final stage is read as text and compared with the
Deployment that `helm template` renders (helm is required: a missing helm fails these
tests, it does not skip them), and versions.env is the reference for the Python and
Kubernetes versions.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.unit.tooling import ROOT, find_helm, pinned

DOCKERFILE = ROOT / "Dockerfile"
CHART = ROOT / "chart"
KIND_CONFIG = ROOT / "ci" / "kind-config.yaml"

OCI_LABELS = ("title", "description", "source", "licenses", "version")


# ---- versions.env -----------------------------------------------------------------------


def minor_of(version: str) -> str:
    """'v1.37.2' -> '1.37', '3.11.17' -> '3.11'."""
    match = re.match(r"v?(\d+\.\d+)(\.\d+)?", version)
    assert match, f"{version!r} is not a version"
    return match.group(1)


# ---- the Dockerfile ---------------------------------------------------------------------


@dataclass
class Stage:
    """One FROM ... of a Dockerfile and the instructions under it, in order."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [args for kw, args in self.instructions if kw == keyword]
        return values[-1] if values else None

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends in a line continuation"
    return result


def stages(text: str) -> list[Stage]:
    """The stages, each FROM's `${ARG}` replaced by the default of an ARG declared before
    the first FROM, as a build without --build-arg does (releases, the kind job)."""
    result: list[Stage] = []
    global_args: dict[str, str] = {}
    for keyword, args in instructions(text):
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], words[0])
            result.append(Stage(image=image, name=name))
        elif keyword == "ARG" and not result:  # ARGs before the first FROM: FROM's own
            arg_name, _, default = args.partition("=")
            global_args[arg_name.strip()] = default.strip()
        elif keyword != "ARG" or result:
            assert result, f"{keyword} before the first FROM"
            result[-1].instructions.append((keyword, args))
    assert result, "the Dockerfile has no FROM"
    return result


def exec_form(keyword: str, args: str | None) -> list[str]:
    assert args is not None, f"the final stage has no {keyword}"
    argv = json.loads(args)
    assert isinstance(argv, list), f"{keyword} must be in exec form (a JSON array): {args}"
    return [str(word) for word in argv]


def image_tag(image: str) -> tuple[str, str]:
    """'python:3.11.17-slim-trixie@sha256:...' -> ('python', '3.11.17-slim-trixie')."""
    reference = image.split("@", 1)[0]
    repository, sep, tag = reference.rpartition(":")
    assert sep, f"{image} has no tag"
    assert "/" not in tag, f"{image} has no tag"
    return repository, tag


@pytest.fixture(scope="module")
def dockerfile_stages() -> list[Stage]:
    return stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(dockerfile_stages: list[Stage]) -> Stage:
    return dockerfile_stages[-1]


@pytest.fixture(scope="module")
def image_user(final_stage: Stage) -> tuple[str, str | None]:
    user = final_stage.last("USER")
    assert user, "the final stage sets no USER, so the image runs as root"
    uid, _, gid = user.partition(":")
    return uid, gid or None


# ---- the chart, rendered ----------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    assert (CHART / "Chart.yaml").is_file(), f"no chart at {CHART}"
    # --kube-version: a helm built with `go install` assumes v1.20, below the chart's
    # kubeVersion; render for the cluster the project pins instead.
    argv = [
        find_helm(), "template", "webhook", str(CHART), "--namespace", "pod-labeler",
        "--kube-version", pinned("KUBERNETES_VERSION"),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    found = [
        doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "Deployment"
    ]
    assert len(found) == 1, f"the chart renders {len(found)} Deployments, expected 1"
    return found[0]


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the Deployment should run the server container alone"
    return dict(containers[0])


def effective_security(deployment: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A container securityContext field, else the Pod's (Kubernetes' precedence)."""
    from_container = (container.get("securityContext") or {}).get(key)
    if from_container is not None:
        return from_container
    return (deployment["spec"]["template"]["spec"].get("securityContext") or {}).get(key)


# ---- kind -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kind_nodes() -> list[dict[str, Any]]:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert config["kind"] == "Cluster"
    return list(config["nodes"])


# ---- the image runs what the chart runs --------------------------------------------------


def test_image_starts_the_same_command_as_the_chart_deployment(
    final_stage: Stage, container: dict[str, Any]
) -> None:
    entrypoint = exec_form("ENTRYPOINT", final_stage.last("ENTRYPOINT"))
    cmd = final_stage.last("CMD")
    argv = entrypoint + (exec_form("CMD", cmd) if cmd else [])
    assert argv == container["command"]


def test_image_user_is_the_numeric_user_the_chart_runs_as(
    image_user: tuple[str, str | None], deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    uid, gid = image_user
    assert uid == str(effective_security(deployment, container, "runAsUser"))
    chart_gid = effective_security(deployment, container, "runAsGroup")
    if chart_gid is not None:
        assert gid == str(chart_gid)


def test_image_user_is_numeric_and_not_root_so_run_as_non_root_can_be_enforced(
    image_user: tuple[str, str | None],
) -> None:
    uid, gid = image_user
    assert uid.isdigit(), f"USER {uid}: the kubelet cannot check a user name for runAsNonRoot"
    assert int(uid) != 0
    assert gid is None or gid.isdigit()


def test_image_exposes_the_port_the_chart_serves_https_on(
    final_stage: Stage, container: dict[str, Any]
) -> None:
    exposed = {
        (int(port), protocol.lower() or "tcp")
        for args in final_stage.all("EXPOSE")
        for port, _, protocol in (word.partition("/") for word in args.split())
    }
    https = [port for port in container["ports"] if port.get("name") == "https"]
    assert len(https) == 1, "the chart's container has no port named https"
    assert exposed == {(https[0]["containerPort"], https[0].get("protocol", "TCP").lower())}


def test_image_carries_the_oci_title_description_source_licenses_and_version_labels(
    final_stage: Stage,
) -> None:
    labels = " ".join(final_stage.all("LABEL"))
    missing = [name for name in OCI_LABELS if f"org.opencontainers.image.{name}=" not in labels]
    assert not missing, f"missing OCI labels: {missing}"


# ---- the Python base ----------------------------------------------------------------------


def test_every_stage_starts_from_the_python_minor_pinned_in_versions_env(
    dockerfile_stages: list[Stage],
) -> None:
    for stage in dockerfile_stages:
        repository, tag = image_tag(stage.image)
        assert repository.rsplit("/", 1)[-1] == "python", f"{stage.image} is not a Python image"
        assert minor_of(tag) == pinned("PYTHON_VERSION"), stage.image


def test_python_base_image_is_pinned_to_a_patch_release(dockerfile_stages: list[Stage]) -> None:
    for stage in dockerfile_stages:
        _, tag = image_tag(stage.image)
        assert re.match(r"\d+\.\d+\.\d+-", tag), f"{stage.image}: pin a patch release"


def test_the_base_image_is_a_build_argument_so_make_up_can_build_on_a_local_base() -> None:
    lines = [args for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "FROM"]

    assert lines, "the Dockerfile has no FROM"
    assert all(line.split()[0] == "${BASE}" for line in lines), lines


def test_builder_and_final_stages_share_the_interpreter_the_venv_was_made_with(
    dockerfile_stages: list[Stage],
) -> None:
    assert len(dockerfile_stages) >= 2, "the image should be built in stages"
    assert {stage.image for stage in dockerfile_stages} == {dockerfile_stages[-1].image}


# ---- the kind cluster ----------------------------------------------------------------------


def test_kind_cluster_has_one_control_plane_and_one_worker(
    kind_nodes: list[dict[str, Any]],
) -> None:
    assert sorted(node["role"] for node in kind_nodes) == ["control-plane", "worker"]


def test_kind_nodes_run_the_node_image_pinned_in_versions_env(
    kind_nodes: list[dict[str, Any]],
) -> None:
    assert [node.get("image") for node in kind_nodes] == [pinned("KIND_NODE_IMAGE")] * 2


def test_kind_node_image_is_pinned_by_digest(kind_nodes: list[dict[str, Any]]) -> None:
    for node in kind_nodes:
        assert re.search(r"@sha256:[0-9a-f]{64}$", node["image"]), node["image"]


def test_kind_node_image_runs_the_kubernetes_minor_of_the_local_control_plane(
    kind_nodes: list[dict[str, Any]],
) -> None:
    """The same minor, not the same patch: kind's releases ship node images for a few
    patch releases only (kind v0.33.0 has v1.37.0, not v1.37.2); versions.env says which.
    """
    for node in kind_nodes:
        _, tag = image_tag(node["image"])
        assert minor_of(tag) == minor_of(pinned("KUBERNETES_VERSION")), node["image"]
