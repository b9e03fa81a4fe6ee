"""Put a cpu-profile curriculum run's outputs into the lessons, and its HTML pages into docs/lessons/.

Run after `make curriculum` on an idle machine (a fresh clone is best: its commit is what the lessons will name):

    .venv/bin/python tools/commit_outputs.py [RUN_DIR]   # default: runs/support_tickets-cpu

For each lesson, the executed notebook in RUN_DIR/notebooks/ gives its outputs to notebooks/NN_name.ipynb, cell by
cell, where the cell's source is still the one that ran (``ftlib.course.outputs``: progress lines and volatile
metadata dropped, paths made relative); cells edited since are left empty and listed. The run must be a `cpu`
profile run that ran through. Then docs/lessons/ gets one HTML page per lesson and an index, made from the
committed notebooks. Prints what each lesson carries and the sizes added.

    .venv/bin/python tools/commit_outputs.py --pages   # after editing a lesson's text: its page again, no run

``--pages`` remakes docs/lessons/ from the committed notebooks alone: their outputs stay as they are, the pages'
title names the run their metadata records, and the index quotes that run's times
(``ftlib.course.timings.CPU_MEASUREMENTS``, the first that has every lesson).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ftlib.core import runtime  # noqa: E402
from ftlib.core.fileio import write_text  # noqa: E402
from ftlib.course.curriculum import NOTEBOOKS  # noqa: E402
from ftlib.course.outputs import ReferenceRun, commit_outputs, reference_run  # noqa: E402
from ftlib.course.report import export_html, notebook_status  # noqa: E402
from ftlib.course.timings import CPU_MEASUREMENTS  # noqa: E402

HTML_DIR = ROOT / "docs" / "lessons"


def machine() -> str:
    """``2-core AMD EPYC, 23.5 GiB``: what the run's lessons will name."""
    info = runtime.machine()
    return f"{info['cores']}-core {info['cpu']}, {info['memory_gib']} GiB"


def repository_of(folder: Path) -> tuple[Path, str]:
    """The git repository a run folder lies in, and its commit (short hash)."""
    top = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode:
        raise SystemExit(f"{folder}: not inside a git repository, so the run's commit is unknown")
    root = Path(top.stdout.strip())
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return root, commit.stdout.strip()


def share_styles(pages: list[Path]) -> None:
    """Move the style sheets every page repeats (nbconvert inlines about 260 KB of JupyterLab's CSS in each) into one
    ``lessons.css`` beside them, linked from each page: the pages look the same, at a seventh of the size."""
    pattern = re.compile(r"<style[^>]*>.*?</style>", re.S)
    texts = {page: page.read_text(encoding="utf-8") for page in pages}
    common = [block for block in pattern.findall(texts[pages[0]]) if all(block in t for t in texts.values())]
    if not common:
        return
    sheet = "\n".join(re.sub(r"^<style[^>]*>|</style>$", "", block) for block in common)
    write_text(sheet, pages[0].parent / "lessons.css")
    for page, text in texts.items():
        for index, block in enumerate(common):
            text = text.replace(block, '<link rel="stylesheet" href="lessons.css">' if index == 0 else "", 1)
        write_text(text, page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default=str(ROOT / "runs" / "support_tickets-cpu"), type=Path)
    parser.add_argument("--pages", action="store_true", help="remake docs/lessons/ from the committed notebooks only")
    args = parser.parse_args(argv)
    if args.pages:
        return write_pages()
    run_dir = args.run_dir.resolve()
    repository, commit = repository_of(run_dir)
    executed_paths = [run_dir / "notebooks" / f"{name}.ipynb" for name in NOTEBOOKS]
    problems = []
    executed = {}
    for name, path in zip(NOTEBOOKS, executed_paths):
        if not path.is_file():
            problems.append(f"{path}: missing (did the run reach {name}?)")
            continue
        notebook = nbformat.read(path, as_version=4)
        profile = notebook.metadata.get("papermill", {}).get("parameters", {}).get("profile")
        status = notebook_status(notebook)
        if profile != "cpu":
            problems.append(f"{path}: a {profile!r} profile run; the lessons carry a cpu-profile run's outputs")
        elif status.state != "ran":
            problems.append(f"{path}: {status.text}")
        executed[name] = notebook
    if problems:
        raise SystemExit("not committed:\n  " + "\n  ".join(problems))
    day = date.fromtimestamp(max(path.stat().st_mtime for path in executed_paths)).isoformat()
    run = ReferenceRun(day, machine(), "cpu", commit)
    print(f"run {run_dir} ({run.line()})")
    before = sum((ROOT / "notebooks" / f"{name}.ipynb").stat().st_size for name in NOTEBOOKS)
    for name in NOTEBOOKS:
        path = ROOT / "notebooks" / f"{name}.ipynb"
        lesson = json.loads(path.read_text())
        committed, empty = commit_outputs(lesson, executed[name], repository, run)
        nbformat.write(nbformat.from_dict(committed), path)
        cells = [c for c in committed["cells"] if c["cell_type"] == "code"]
        plots = sum("image/png" in o.get("data", {}) for c in cells for o in c["outputs"])
        print(
            f"  {name}: {sum(bool(c['outputs']) for c in cells)} of {len(cells)} code cells with outputs, {plots} "
            f"plots, {path.stat().st_size / 1024:.0f} KiB"
            + (f"; left empty (edited since the run): cells {', '.join(map(str, empty))}" if empty else "")
        )
    after = sum((ROOT / "notebooks" / f"{name}.ipynb").stat().st_size for name in NOTEBOOKS)
    timings_file = run_dir / "curriculum_timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else None
    index, pages = html_pages(run, timings)
    print(f"notebooks: {before / 1024:.0f} KiB -> {after / 1024:.0f} KiB; HTML pages {pages / 1024:.0f} KiB ({index})")
    return 0


def html_pages(run: ReferenceRun, timings: dict[str, float] | None, folder: Path = HTML_DIR) -> tuple[Path, int]:
    """docs/lessons/: a page per committed lesson and the index; returns the index and the pages' bytes."""
    index = export_html(
        [ROOT / "notebooks" / f"{name}.ipynb" for name in NOTEBOOKS],
        folder,
        f"Fine-tuning LLMs, the lessons as run on {run.date} (cpu profile, {run.machine})",
        timings,
    )
    share_styles(sorted(folder.glob("0*.html")))
    return index, sum(page.stat().st_size for page in folder.glob("*.*"))


def write_pages(folder: Path = HTML_DIR) -> int:
    """``--pages``: the pages of the committed notebooks, titled with the run their outputs come from."""
    runs = {}
    for name in NOTEBOOKS:
        run = reference_run(json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text()))
        if run is None:
            raise SystemExit(f"notebooks/{name}.ipynb carries no run's outputs: run `make curriculum` and this tool")
        runs[name] = run
    run = runs[NOTEBOOKS[-1]]
    if any(r != run for r in runs.values()):
        raise SystemExit(
            "the lessons carry different runs' outputs:\n  "
            + "\n  ".join(f"{name}: {r.date}, commit {r.commit}" for name, r in runs.items())
        )
    timings = next((t.seconds for t in CPU_MEASUREMENTS if set(NOTEBOOKS) <= set(t.seconds)), None)
    index, pages = html_pages(run, timings, folder)
    print(
        f"pages of the {run.profile}-profile run of {run.date} ({run.machine}, commit {run.commit}): "
        f"{pages / 1024:.0f} KiB ({index})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
