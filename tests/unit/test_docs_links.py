"""Every relative link in the docs resolves: `[text](path)` to a file or directory of the
repository, and `[text](path#anchor)` (or `#anchor` alone) into a markdown file to one
of its headings, by the slug GitHub gives that heading. Links to other sites are not
followed: a unit test never touches the network."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.unit.tooling import ROOT

# The docs a reader follows links in. chart/README.md is generated from the template:
# its links are the template's, and it sits in the same directory.
DOCS = sorted(
    [
        ROOT / "README.md",
        ROOT / "DEVELOPMENT.md",
        *(ROOT / "docs").glob("*.md"),
        ROOT / "chart" / "README.md.gotmpl",
    ]
)
# Files whose headings a `#anchor` can name.
MARKDOWN_SUFFIXES = (".md", ".gotmpl")

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+).+?\1", re.S)
# [text](target) or [text](target "title"); text may hold `code` but not brackets.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where links are links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def relative_links(doc: Path) -> list[str]:
    targets = LINK.findall(prose(doc.read_text()))
    return [target for target in targets if not SCHEME.match(target)]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped
    (letters, digits, `_` and `-` stay), each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """Every heading's slug; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", doc.read_text())):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def resolve(doc: Path, link: str) -> tuple[Path, str]:
    """(the file a link points at, its anchor or "")."""
    path, _, anchor = link.partition("#")
    target = (doc.parent / unquote(path)).resolve() if path else doc
    return target, anchor


def inside_repository(path: Path) -> bool:
    return path == ROOT or ROOT in path.parents


def doc_id(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_relative_link_points_at_a_path_in_the_repository(doc: Path) -> None:
    targets = {link: resolve(doc, link)[0] for link in relative_links(doc)}
    broken = [
        link
        for link, target in targets.items()
        if not (target.exists() and inside_repository(target))
    ]
    assert broken == [], f"{doc_id(doc)} links to what does not exist"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_anchor_names_a_heading_of_the_markdown_file_it_points_into(doc: Path) -> None:
    into_markdown = {
        link: (target, anchor)
        for link in relative_links(doc)
        for target, anchor in [resolve(doc, link)]
        if anchor and target.is_file() and target.suffix in MARKDOWN_SUFFIXES
    }
    broken = [
        link for link, (target, anchor) in into_markdown.items() if anchor not in anchors(target)
    ]
    assert broken == [], f"{doc_id(doc)} links to headings that do not exist"


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("The two commands", "the-two-commands"),
        ("`localcp/`", "localcp"),
        ("Backfilling 2,000 Pods (2026-12-01)", "backfilling-2000-pods-2026-12-01"),
        ("Pods that were running before the release", "pods-that-were-running-before-the-release"),
        ("A [linked](https://example.com) heading", "a-linked-heading"),
    ],
)
def test_a_heading_slug_is_the_anchor_github_makes_of_it(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_links_inside_code_are_not_links(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "[real](a.md)\n\n```console\n[fenced](b.md)\n```\n\n`[inline](c.md)` and [x](d.md#e)\n"
    )

    assert relative_links(doc) == ["a.md", "d.md#e"]


def test_links_to_other_sites_are_not_relative(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("[site](https://example.com/a.md) [mail](mailto:a@example.com) [here](#top)\n")

    assert relative_links(doc) == ["#top"]


def test_a_repeated_heading_gets_a_numbered_anchor(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\n## Notes\n\n```\n# not a heading\n```\n\n## Notes\n")

    assert anchors(doc) == {"title", "notes", "notes-1"}
