"""The documentation: the MkDocs site builds strictly, every command has its page, the README is a front page.

The strict build (`make docs`) fails on any warning: a broken link or anchor between pages, a page
left out of the navigation, or a docstring griffe cannot parse. The other checks catch what the
build cannot: a command added without a page, a page that lost the worked examples of its
command's ``--help``, and a README that grew back into a manual or links to a page that moved.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from ackd_bench.benchmark.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
COMMAND_PAGES = DOCS / "commands"
README_MAX_LINES = 150


def test_the_site_builds_strictly_without_warnings(tmp_path: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # Material's end-of-life banner is not a warning about the docs
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    problems = [line for line in output.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not problems, "\n".join(problems)
    assert (tmp_path / "site" / "index.html").is_file()
    # The API reference was generated from the sources, not left empty.
    api = (tmp_path / "site" / "api" / "method" / "index.html").read_text(encoding="utf-8")
    assert 'id="ackd_bench.benchmark.method.register_method"' in api


def help_examples(command: click.Command) -> list[str]:
    """The lines of the ``Example:`` block of a command's help, up to the first blank line."""
    lines = (command.help or "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Example:"]
    assert starts, f"{command.name}: its --help has no Example: block"
    examples = []
    for line in lines[starts[0] + 1:]:
        if not line.strip() or line.strip() == "\b":
            break
        examples.append(line)
    assert examples, f"{command.name}: its Example: block is empty"
    return examples


def normalised(line: str) -> str:
    return " ".join(line.split())


def command_pages() -> list[tuple[str, click.Command, Path]]:
    """(name, command, page) for every command and every subcommand of a group (on the group's page)."""
    pages = []
    for name, command in sorted(main.commands.items()):
        page = COMMAND_PAGES / f"{name}.md"
        pages.append((name, command, page))
        if isinstance(command, click.Group):
            pages += [(f"{name} {sub}", subcommand, page) for sub, subcommand in sorted(command.commands.items())]
    return pages


@pytest.mark.parametrize(("name", "command", "page"), command_pages(), ids=[p[0] for p in command_pages()])
def test_every_command_has_a_page_showing_its_examples(name: str, command: click.Command, page: Path) -> None:
    assert page.is_file(), f"`ackd-bench {name}` has no page {page.relative_to(REPO)}"
    text = page.read_text(encoding="utf-8")
    assert f"ackd-bench {name}" in text, f"{page.name} never names `ackd-bench {name}`"
    lines = {normalised(line) for line in text.splitlines()}
    missing = [example.strip() for example in help_examples(command) if normalised(example) not in lines]
    assert not missing, f"{page.relative_to(REPO)} lacks these example lines of `ackd-bench {name} --help`: {missing}"


def nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node] if node.endswith(".md") else []
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_pages(value)]
    if isinstance(node, list):
        return [page for item in node for page in nav_pages(item)]
    return []


def test_the_navigation_holds_every_page_and_only_existing_ones() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice in the navigation"
    missing = [page for page in listed if not (DOCS / page).is_file()]
    assert not missing, f"pages in mkdocs.yml's nav that do not exist: {missing}"
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")
               if not any(part.startswith(".") for part in p.relative_to(DOCS).parts)}
    assert on_disk == set(listed), f"pages outside the navigation: {sorted(on_disk - set(listed))}"
    assert "commands/export.md" in listed


def heading_anchors(page: Path) -> set[str]:
    """The anchors MkDocs gives the page's headings (Python-Markdown's toc slugify)."""
    from markdown.extensions.toc import slugify

    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slugify(m.group(1).strip(), "-") for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


def test_the_readme_is_a_short_front_page_whose_links_into_the_docs_resolve() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    n_lines = len(readme.splitlines())
    assert n_lines <= README_MAX_LINES, f"README.md has {n_lines} lines; the details belong in docs/"
    links = re.findall(r"\]\((docs/[^)\s]+)\)", readme)
    assert len(links) >= 10, "the README should link into the docs"
    for link in links:
        path, _, anchor = link.partition("#")
        target = REPO / path
        assert target.is_file(), f"README.md links to {path}, which does not exist"
        if anchor:
            assert anchor in heading_anchors(target), f"README.md links to {link}: {path} has no heading #{anchor}"
    # The commands CI and the quick start rely on stay on the front page.
    for command in ("make demo", "make test", "make test-all", "make docs"):
        assert command in readme, f"README.md no longer shows `{command}`"
