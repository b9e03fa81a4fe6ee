"""The README and docs/ hold together: every relative link resolves, to a file and, with an anchor, to a heading.

GitHub turns a heading into an anchor by lower-casing it, dropping punctuation other than hyphens, and turning
spaces into hyphens; the check does the same. Links in the lessons' and the workshop's Markdown count too, since a
learner follows them from GitHub.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
README_MAX_LINES = 120  # two screens: what the course is, the two commands, where to open it, links


def anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    fence, found = False, set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            found.add(anchor(line.lstrip("#")))
    return found


def markdown_sources() -> list[tuple[Path, str]]:
    """(file, Markdown text) for the README, docs/, the workshop kit and every notebook's Markdown cells."""
    sources = [
        (path, path.read_text(encoding="utf-8")) for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    ]
    sources += [(path, path.read_text(encoding="utf-8")) for path in sorted((ROOT / "workshop").glob("*.md"))]
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:  # JupyterLab's copies (git-ignored), made while the browser test runs
            continue
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        sources.append((path, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")))
    return sources


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(path: Path, text: str) -> list[str]:
    problems = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # https:, mailto: ... the network is not checked here
            continue
        file_part, _, fragment = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            problems.append(f"{shown(path)}: {target}: no such file")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            problems.append(f"{shown(path)}: {target}: no heading #{fragment}")
    return problems


def test_every_relative_link_resolves():
    problems = [problem for path, text in markdown_sources() for problem in broken_links(path, text)]
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A section\n[ok](#a-section) [bad](#nowhere) [gone](missing.md) [web](https://x.y)\n")
    problems = broken_links(page, page.read_text())
    assert [p.split(": ")[1] for p in problems] == ["#nowhere", "missing.md"]


def test_the_readme_is_short_and_points_at_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    assert "make curriculum" in readme and "make test" in readme
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, f"README links no docs/{page.name}"


def command_blocks(text: str) -> list[str]:
    """The shell commands the Markdown shows: inline code spans and fenced bash lines."""
    spans = re.findall(r"`([^`\n]+)`", text)
    fenced = [line for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S) for line in block.splitlines()]
    return spans + fenced


def test_every_command_the_docs_show_exists():
    """``python -m ftlib X`` names a command, ``make X`` a target, and every script path a file in the repository."""
    from ftlib.course.cli import COMMANDS

    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))
    problems = []
    for path, text in markdown_sources():
        for command in command_blocks(text):
            for name in re.findall(r"python -m ftlib ([a-z-]+)", command):
                if name not in COMMANDS:
                    problems.append(f"{shown(path)}: `python -m ftlib {name}`: no such command")
            for name in re.findall(r"^make ([a-z-]+)", command.strip()):
                if name not in targets:
                    problems.append(f"{shown(path)}: `make {name}`: no such target in the Makefile")
            for script in re.findall(r"\b((?:benchmarks|tools)/[\w/]+\.(?:py|sh))", command):
                if not (ROOT / script).is_file():
                    problems.append(f"{shown(path)}: {script}: no such file")
    assert not problems, "\n".join(problems)
