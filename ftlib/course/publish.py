"""Where the course is published, stamped into the notebooks' badges and setup cells and the README.

The repository URL and the ref learners get live in one place, ``[tool.ftlib.publish]`` in pyproject.toml.
``python -m ftlib publish`` writes them into every notebook (the "Open in Colab / Kaggle" badges of its first
cell and its setup cell) and into the README's lesson table; ``check`` lists whatever disagrees (a test runs it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import tomllib

from ftlib.core.fileio import write_text

BADGE_MARK = "[![Open In Colab]"
SETUP_MARK = "# Setup:"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
KAGGLE_BADGE = "https://kaggle.com/static/images/open-in-kaggle.svg"

# The setup cell, identical in every notebook but for the two stamped values. Only the standard library runs
# before the clone exists; ftlib.core.hosted does the rest.
SETUP_CELL = """\
# Setup: on Colab or Kaggle this clones the course at its pinned ref, installs the pinned stack around the
# runtime's own torch and numpy, and shows the GPU. On your own machine (after `make setup`) it does nothing.
COURSE_REPOSITORY = {repository!r}  # stamped by `python -m ftlib publish`
COURSE_REF = {ref!r}
import os, subprocess, sys

if "COLAB_RELEASE_TAG" in os.environ or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:  # set by Colab / by Kaggle
    course = os.path.abspath(os.path.basename(COURSE_REPOSITORY.rstrip("/")).removesuffix(".git"))
    if not os.path.isdir(os.path.join(course, ".git")):  # Kaggle needs Internet on (Settings) for this
        subprocess.run(["git", "clone", "--quiet", COURSE_REPOSITORY, course], check=True)
        subprocess.run(["git", "-C", course, "checkout", "--quiet", COURSE_REF], check=True)
    sys.path.insert(0, course)
    from ftlib.core import hosted

    hosted.setup(course, COURSE_REF)"""


@dataclass(frozen=True)
class Publication:
    """Where learners' badges and setup cells fetch the course from."""

    repository: str  # https://github.com/OWNER/REPO (or any URL or path git can clone, for tests)
    ref: str  # the branch, tag or commit learners get

    @property
    def github_path(self) -> str:
        """OWNER/REPO of a GitHub URL (badges need GitHub)."""
        match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(?:\.git)?/?", self.repository)
        if not match:
            raise ValueError(f"badges need a https://github.com/OWNER/REPO repository, not {self.repository!r}")
        return match.group(1)

    def notebook_url(self, notebook: str) -> str:
        return f"https://github.com/{self.github_path}/blob/{self.ref}/notebooks/{notebook}"

    def badges(self, notebook: str) -> str:
        """Markdown badges opening this notebook, at this ref, in Colab and in Kaggle."""
        colab = f"https://colab.research.google.com/github/{self.github_path}/blob/{self.ref}/notebooks/{notebook}"
        kaggle = f"https://kaggle.com/kernels/welcome?src={self.notebook_url(notebook)}"
        return f"[![Open In Colab]({COLAB_BADGE})]({colab}) [![Open In Kaggle]({KAGGLE_BADGE})]({kaggle})"

    def setup_cell(self) -> str:
        return SETUP_CELL.format(repository=self.repository, ref=self.ref)


def read_publication(root: str | Path) -> Publication:
    """``[tool.ftlib.publish]`` of pyproject.toml."""
    path = Path(root) / "pyproject.toml"
    try:
        table = tomllib.loads(path.read_text())["tool"]["ftlib"]["publish"]
        return Publication(str(table["repository"]), str(table["ref"]))
    except KeyError as missing:
        raise ValueError(f"{path}: [tool.ftlib.publish] needs `repository` and `ref` (missing {missing})") from None


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def stamp_notebook(notebook: dict, name: str, publication: Publication, setup_source: str | None = None) -> dict:
    """Put the badges on the first markdown cell (line 2) and the setup cell after the parameters cell."""
    cells = notebook["cells"]
    title = cells[0]
    if title["cell_type"] != "markdown":
        raise ValueError(f"{name}: the first cell must be the markdown title that carries the badges")
    lines = [line for line in "".join(title["source"]).splitlines() if not line.startswith(BADGE_MARK)]
    lines.insert(1, publication.badges(name))
    title["source"] = _lines("\n".join(lines))
    setup = {
        "cell_type": "code",
        "execution_count": None,
        "id": "course-setup",
        "metadata": {"tags": ["setup"]},
        "outputs": [],
        "source": _lines(setup_source or publication.setup_cell()),
    }
    index = next((i for i, c in enumerate(cells) if "setup" in c.get("metadata", {}).get("tags", [])), None)
    if index is None:
        index = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])) + 1
        cells.insert(index, setup)
    else:
        cells[index] = setup
    return notebook


def readme_table_row(line: str, publication: Publication) -> str:
    """A README lesson-table row with its last column set to the notebook's badges."""
    match = re.match(r"\| `notebooks/([^`]+\.ipynb)` \|", line)
    if not match:
        return line
    cells = line.rstrip("\n").strip("|").split(" | ")
    cells = [cells[0].strip(), cells[1].strip(), publication.badges(match.group(1))]
    return "| " + " | ".join(cells) + " |\n"


def stamp(root: str | Path) -> list[Path]:
    """Write the publication into every notebook and the README's lesson table; returns the files changed."""
    root = Path(root)
    publication = read_publication(root)
    changed = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        before = path.read_text()
        notebook = stamp_notebook(json.loads(before), path.name, publication)
        after = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        if after != before:
            write_text(after, path)
            changed.append(path)
    readme = root / "README.md"
    before = readme.read_text()
    after = "".join(readme_table_row(line, publication) for line in _lines(before))
    if after != before:
        write_text(after, readme)
        changed.append(readme)
    return changed


def check(root: str | Path) -> list[str]:
    """Every place where a notebook's badges or setup cell, or the README's badges, disagree with pyproject."""
    root = Path(root)
    publication = read_publication(root)
    problems = []
    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        badges = [line for line in "".join(cells[0]["source"]).splitlines() if line.startswith(BADGE_MARK)]
        if badges != [publication.badges(path.name)]:
            problems.append(f"{path.name}: the first cell's badges are not {publication.badges(path.name)}")
        setups = ["".join(c["source"]) for c in cells if "setup" in c.get("metadata", {}).get("tags", [])]
        if setups != [publication.setup_cell()]:
            problems.append(f"{path.name}: it needs exactly one cell tagged 'setup', equal to the stamped one")
    readme = (root / "README.md").read_text()
    for path in notebooks:
        if publication.badges(path.name) not in readme:
            problems.append(f"README.md: no badges for {path.name} at {publication.repository} {publication.ref}")
    return problems
