"""Every relative link in the project's Markdown (README.md, docs/, results/, reference/, ...) leads to a file or
folder that exists: a renamed results folder or a moved section must take its links along."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_FOLDERS = {"build", "node_modules"}  # besides hidden ones (.venv, .git, .arm-emulator): not the project's
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)  # code shows commands and paths, not links
CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...
SAME_FILE_ANCHOR = re.compile(r"\]\(#([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def markdown_files() -> list:
    return sorted(path for path in ROOT.rglob("*.md")
                  if not any(part.startswith(".") or part in SKIPPED_FOLDERS
                             for part in path.relative_to(ROOT).parts[:-1]))


def relative_links(text: str) -> list:
    text = CODE.sub("", text)
    targets = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    return [target for target in targets if not EXTERNAL.match(target) and not target.startswith("#")]


def anchors(text: str) -> set:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces as dashes, a repeated
    heading numbered (-1, -2, ...)."""
    found = set()
    for heading in HEADING.findall(CODE_BLOCK.sub("", text)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        numbered, count = slug, 0
        while numbered in found:
            count += 1
            numbered = f"{slug}-{count}"
        found.add(numbered)
    return found


def test_the_markdown_files_checked_include_the_guides_and_the_results():
    names = {path.relative_to(ROOT).as_posix() for path in markdown_files()}
    assert {"README.md", "CHANGELOG.md", "docs/DEVELOPING.md", "results/README.md"} <= names


def test_links_are_found_and_code_is_not_taken_for_one():
    text = ("[a](results/x.md#part) ![plot](p.png \"title\") [site](https://example.org) [top](#layout)\n"
            "`[not](a-link.md)`\n```\n[nor](this.md)\n```\n[ref]: docs/DEVELOPING.md\n")
    assert relative_links(text) == ["results/x.md#part", "p.png", "docs/DEVELOPING.md"]
    assert anchors("# The passage cache: `deformer-cache build | verify | info`\n## Two\n## Two\n") == {
        "the-passage-cache-deformer-cache-build--verify--info", "two", "two-1"}


@pytest.mark.parametrize("markdown", markdown_files(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(markdown):
    """A link's file or folder exists; its #anchor, where it has one into Markdown, names a heading there."""
    broken = []
    for target in relative_links(markdown.read_text(encoding="utf-8")) + [
            "#" + anchor for anchor in SAME_FILE_ANCHOR.findall(CODE.sub("", markdown.read_text(encoding="utf-8")))]:
        path, _, anchor = unquote(target.split("?", 1)[0]).partition("#")
        linked = markdown.parent / path if path else markdown
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(target)
    assert broken == [], f"{markdown.relative_to(ROOT)}: links to nothing: {broken}"
