"""`make up` rebuilds the webhook's image exactly when what goes into it changed: the
image's tag is a digest of the base image, the Dockerfile and the build context."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcp.image import tag_for

BASE_ID = "sha256:" + "a" * 64


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('serving')\n")
    for name in ("Dockerfile", "requirements.txt", "constraints.txt"):
        (tmp_path / name).write_text(f"{name}\n")
    return tmp_path


def test_the_same_inputs_give_the_same_tag(checkout: Path) -> None:
    assert tag_for(BASE_ID, checkout) == tag_for(BASE_ID, checkout)


def test_a_change_to_the_app_gives_a_new_tag(checkout: Path) -> None:
    before = tag_for(BASE_ID, checkout)
    (checkout / "app" / "main.py").write_text("print('serving, changed')\n")

    assert tag_for(BASE_ID, checkout) != before


def test_a_new_file_in_the_app_gives_a_new_tag(checkout: Path) -> None:
    before = tag_for(BASE_ID, checkout)
    (checkout / "app" / "extra.py").write_text("")

    assert tag_for(BASE_ID, checkout) != before


@pytest.mark.parametrize("name", ["Dockerfile", "requirements.txt", "constraints.txt"])
def test_a_change_to_the_build_files_gives_a_new_tag(checkout: Path, name: str) -> None:
    before = tag_for(BASE_ID, checkout)
    (checkout / name).write_text("changed\n")

    assert tag_for(BASE_ID, checkout) != before


def test_a_new_base_image_gives_a_new_tag(checkout: Path) -> None:
    assert tag_for("sha256:" + "b" * 64, checkout) != tag_for(BASE_ID, checkout)


def test_bytecode_left_by_a_local_run_does_not_change_the_tag(checkout: Path) -> None:
    before = tag_for(BASE_ID, checkout)
    (checkout / "app" / "__pycache__").mkdir()
    (checkout / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")

    assert tag_for(BASE_ID, checkout) == before


def test_files_outside_the_build_context_do_not_change_the_tag(checkout: Path) -> None:
    before = tag_for(BASE_ID, checkout)
    (checkout / "README.md").write_text("docs\n")

    assert tag_for(BASE_ID, checkout) == before
