"""The executed notebooks as HTML pages with an index, to read a curriculum run without running anything.

``export_html`` turns each executed notebook (``<run folder>/notebooks/NN_name.ipynb``) into one standalone
HTML page (nbconvert's ``HTMLExporter``: plots are inlined as ``data:image/png;base64,`` images, so a page
needs no files beside it) and writes ``index.html``: every notebook in curriculum order with its link, its
run time and its status:

- ``ran``: every cell ran;
- ``failed at cell N``: cell N raised (N counts the non-empty code cells, papermill's parameters cell
  included, as the curriculum's progress lines do); the partial output is exported all the same;
- ``not run``: no executed notebook, or none from this run (``timings`` given and the notebook not in it:
  the file is an earlier run's, and its old page is removed rather than shown as this run's);
- ``unreadable``: an executed notebook that is no valid notebook (its writing was cut short): no page.

The notebook named ``failed`` (the one the curriculum stopped at) is "failed" even where its output shows no
error cell (the kernel died, or never started): "failed at cell N" where a cell raised, else "failed".
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ftlib.core.fileio import write_text
from ftlib.core.progress import format_seconds

INDEX = "index.html"

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.4rem 0.6rem; border-bottom: 1px solid #ddd; }
td.time { text-align: right; font-variant-numeric: tabular-nums; }
.ran { color: #1a7f37; } .failed, .unreadable { color: #cf222e; font-weight: bold; } .not-run { color: #777; }
.heading { color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class NotebookStatus:
    """One notebook's line in the index: ``state`` is "ran", "failed", "not run" or "unreadable"; ``cell`` the
    failed cell, where known."""

    state: str
    cell: int | None = None

    @property
    def text(self) -> str:
        return f"failed at cell {self.cell}" if self.state == "failed" and self.cell else self.state


def raised(output) -> bool:
    """An error output, except a clean ``sys.exit()`` / ``sys.exit(0)``, which papermill does not count either."""
    if output.get("output_type") != "error":
        return False
    return not (output.get("ename") == "SystemExit" and output.get("evalue") in ("", "0"))


def notebook_status(notebook) -> NotebookStatus:
    """Whether an executed notebook ran through or failed, and at which code cell (1-based, non-empty ones).

    A cell failed where it has an error output or papermill marked it (``metadata.papermill``: status
    "failed" or an exception); papermill's own note cells at the top and before the failed cell are markdown.
    """
    number = 0
    for cell in notebook.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        number += 1
        papermill = cell.get("metadata", {}).get("papermill", {})
        if any(raised(output) for output in cell.get("outputs", ())):
            return NotebookStatus("failed", number)
        if papermill.get("status") == "failed" or papermill.get("exception") is True:
            return NotebookStatus("failed", number)
    return NotebookStatus("ran")


def first_heading(notebook) -> str:
    """The first markdown heading of a notebook (without its ``#``), or ""."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def export_html(
    executed_notebooks: list[Path],
    folder: Path,
    title: str,
    timings: dict[str, float] | None = None,
    failed: str | None = None,
) -> Path:
    """Write one HTML page per executed notebook and an ``index.html`` listing them all, into ``folder``.

    Args:
        executed_notebooks: the executed ``.ipynb`` files in curriculum order; missing ones are listed "not run".
        folder: where the pages go (created); each page is named after its notebook (``03_lora.html``).
        title: the index page's title and heading, e.g. the task and the profile.
        timings: seconds per notebook name (file stem), as ``curriculum_timings.json`` holds them; given, it
            also says which notebooks this run executed (see the module docstring).
        failed: the name of the notebook the run stopped at, if it stopped: "failed" whatever its output shows.

    Returns:
        The path of ``index.html``. Every file is written atomically.
    """
    import nbformat
    from nbconvert import HTMLExporter

    folder = Path(folder)
    quiet = logging.getLogger("ftlib.course.report.nbconvert")
    quiet.setLevel(logging.ERROR)  # not "Alternative text is missing on 1 image(s)." for every plot
    exporter = HTMLExporter(log=quiet)
    rows = []
    for number, path in enumerate(map(Path, executed_notebooks), start=1):
        name = path.stem
        page = folder / f"{name}.html"
        seconds = None if timings is None else timings.get(name)
        heading = ""
        if not path.is_file() or (timings is not None and name not in timings):
            status = NotebookStatus("failed" if name == failed else "not run")
            page.unlink(missing_ok=True)  # an earlier run's page is not this run's
        else:
            try:
                notebook = nbformat.read(path, as_version=4)
            except (ValueError, OSError):  # cut short (a kernel or a disk gave out mid-write): no page to make
                status = NotebookStatus("failed" if name == failed else "unreadable")
                page.unlink(missing_ok=True)
                rows.append((number, name, None, heading, status, seconds))
                continue
            status, heading = notebook_status(notebook), first_heading(notebook)
            if name == failed and status.state != "failed":
                status = NotebookStatus("failed")
            body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": f"{name} · {title}"}})
            write_text(body, page)
        rows.append((number, name, page if page.exists() else None, heading, status, seconds))
    return write_text(index_page(title, rows), folder / INDEX)


def index_page(title: str, rows: list[tuple]) -> str:
    """The index's HTML: a table of (number, name, page or None, heading, status, seconds or None)."""
    lines = []
    for number, name, page, heading, status, seconds in rows:
        link = f'<a href="{quote(page.name)}">{html.escape(name)}</a>' if page else html.escape(name)
        if heading:
            link += f'<br><span class="heading">{html.escape(heading)}</span>'
        css = status.state.replace(" ", "-")
        time_text = "" if seconds is None else f"{format_seconds(seconds)} ({seconds:.1f} s)"
        lines.append(
            f'<tr class="{css}"><td>{number}</td><td>{link}</td>'
            f'<td class="status {css}">{html.escape(status.text)}</td><td class="time">{time_text}</td></tr>'
        )
    ran = sum(1 for row in rows if row[4].state == "ran")
    failed = [f"{row[1]} {row[4].text}" for row in rows if row[4].state == "failed"]
    total = sum(row[5] or 0 for row in rows)
    summary = f"{ran} of {len(rows)} notebook(s) ran" + "".join(f", {text}" for text in failed)
    summary += f"; {format_seconds(total)} in all" if total else ""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="summary">{html.escape(summary)}.</p>',
            "<table>",
            "<thead><tr><th>#</th><th>Notebook</th><th>Status</th><th>Time</th></tr></thead>",
            "<tbody>",
            *lines,
            "</tbody>",
            "</table>",
            "</body>",
            "</html>",
            "",
        ]
    )
