"""The executed notebooks as HTML: pages with their plots inlined, and an index linking each with its status.

No notebook runs here: the "executed" notebooks are built with nbformat, outputs and all.
"""

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ftlib.course import cli
from ftlib.course import curriculum as curriculum_runner
from ftlib.course.report import export_html

pytestmark = pytest.mark.unit


def png_bytes() -> bytes:
    """A small real PNG: a matplotlib line plot."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1, 1), dpi=20)
    figure.add_subplot().plot([0, 1, 2], [2, 1, 3])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def executed_notebook(path: Path, heading: str, plot: bool = False, fails: bool = False) -> Path:
    """A notebook that looks executed by papermill: a heading, a cell that printed, maybe a plot or an error."""
    cells = [
        new_markdown_cell(f"# {heading}\n\nSome teaching."),
        new_code_cell('profile = "cpu"', execution_count=1, metadata={"tags": ["parameters"]}),
        new_code_cell(
            'print("loss 1.23")',
            execution_count=2,
            outputs=[new_output("stream", name="stdout", text="loss 1.23\n")],
        ),
    ]
    if plot:
        data = {"image/png": base64.b64encode(png_bytes()).decode("ascii"), "text/plain": "<Figure size 20x20>"}
        cells.append(new_code_cell("plot()", execution_count=3, outputs=[new_output("display_data", data=data)]))
    if fails:
        error = new_output("error", ename="ValueError", evalue="no data", traceback=["ValueError: no data"])
        cells.append(new_code_cell("1 / 0", execution_count=4, outputs=[error]))
        cells.append(new_code_cell("print('never')"))  # after the failure: not run, no outputs
    nbformat.write(new_notebook(cells=cells), path)
    return path


class Page(HTMLParser):
    """The links, image sources, title and table rows (each a list of its cells' texts) of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.links, self.images, self.rows, self.title = [], [], [], ""
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs.get("href"))
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.rows[-1].append("")
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif self.rows and self.rows[-1]:
            self.rows[-1][-1] = " ".join((self.rows[-1][-1] + " " + data).split())

    def text_rows(self) -> list[str]:
        """The body rows (not the header) as one line of text each."""
        return [" ".join(cell for cell in row if cell) for row in self.rows[1:]]

    def statuses(self) -> list[str]:
        return [row[2] for row in self.rows[1:]]


@pytest.fixture
def run_notebooks(tmp_path):
    folder = tmp_path / "run" / "notebooks"
    folder.mkdir(parents=True)
    return [
        executed_notebook(folder / "01_base_model.ipynb", "The base model", plot=True),
        executed_notebook(folder / "02_data_curation.ipynb", "Curating data"),
        executed_notebook(folder / "03_lora.ipynb", "LoRA", plot=True, fails=True),
        folder / "04_qlora.ipynb",  # the curriculum stopped before it
    ]


def test_index_links_every_executed_notebook_with_its_plots_and_status(tmp_path, run_notebooks):
    html_dir = tmp_path / "run" / "html"
    timings = {"01_base_model": 12.5, "02_data_curation": 75.2, "03_lora": 3.0}
    title = "ftlib curriculum: support_tickets task, cpu profile"
    index = export_html(run_notebooks, html_dir, title, timings)

    assert index == html_dir / "index.html"
    page = Page(index.read_text(encoding="utf-8"))
    assert page.title == title
    assert page.links == ["01_base_model.html", "02_data_curation.html", "03_lora.html"]  # in order; 04 not run
    for link, notebook in zip(page.links, run_notebooks):
        target = html_dir / link
        assert target.is_file()
        images = Page(target.read_text(encoding="utf-8")).images
        embedded = [src for src in images if src.startswith("data:image/png;base64,")]
        had_plot = "image/png" in notebook.read_text(encoding="utf-8")
        assert len(embedded) == (1 if had_plot else 0), link
        if had_plot:
            assert base64.b64decode(embedded[0].split(",", 1)[1]).startswith(b"\x89PNG")
    assert "2 of 4 notebook(s) ran, 03_lora failed at cell 4; 1:31 in all." in index.read_text(encoding="utf-8")
    rows = page.text_rows()
    assert rows[0] == "1 01_base_model The base model ran 0:12 (12.5 s)"
    assert rows[1] == "2 02_data_curation Curating data ran 1:15 (75.2 s)"
    # cell 1 is the parameters cell, 2 printed, 3 plotted, 4 raised
    assert rows[2] == "3 03_lora LoRA failed at cell 4 0:03 (3.0 s)"
    assert rows[3] == "4 04_qlora not run"
    failed_page = (html_dir / "03_lora.html").read_text(encoding="utf-8")
    assert "ValueError" in failed_page and "no data" in failed_page  # the partial output is there to read
    assert not list(html_dir.glob("*.partial"))  # atomic writes leave no temporary files


def test_without_timings_status_comes_from_the_files(tmp_path, run_notebooks):
    index = export_html(run_notebooks, tmp_path / "html", "a run")
    rows = Page(index.read_text(encoding="utf-8")).text_rows()
    assert rows == [
        "1 01_base_model The base model ran",
        "2 02_data_curation Curating data ran",
        "3 03_lora LoRA failed at cell 4",
        "4 04_qlora not run",
    ]


def test_an_earlier_runs_page_is_removed_and_the_named_failure_wins(tmp_path, run_notebooks):
    html_dir = tmp_path / "html"
    export_html(run_notebooks[:2], html_dir, "first run", {"01_base_model": 1.0, "02_data_curation": 2.0})
    assert (html_dir / "02_data_curation.html").is_file()
    # the next run stops at 01 (its kernel died: no error cell); 02's file is the first run's
    index = export_html(run_notebooks[:2], html_dir, "second run", {"01_base_model": 0.5}, failed="01_base_model")
    page = Page(index.read_text(encoding="utf-8"))
    assert page.links == ["01_base_model.html"]
    assert not (html_dir / "02_data_curation.html").exists()
    assert page.text_rows() == ["1 01_base_model The base model failed 0:00 (0.5 s)", "2 02_data_curation not run"]


def test_papermills_failure_notes_keep_the_heading_and_the_failed_cell(tmp_path):
    from papermill.exceptions import PapermillExecutionError
    from papermill.execute import raise_for_execution_errors

    path = executed_notebook(tmp_path / "03_lora.ipynb", "LoRA", plot=True, fails=True)
    notebook = nbformat.read(path, as_version=4)
    cells = len(notebook.cells)
    with pytest.raises(PapermillExecutionError):  # what papermill does to a failed run's output
        raise_for_execution_errors(notebook, str(path))
    assert len(nbformat.read(path, as_version=4).cells) == cells + 2  # its two note cells, at the top and above 4
    index = export_html([path], tmp_path / "html", "a run")
    assert Page(index.read_text(encoding="utf-8")).text_rows() == ["1 03_lora LoRA failed at cell 4"]


def test_a_clean_sys_exit_is_no_failure(tmp_path):
    path = executed_notebook(tmp_path / "01_base_model.ipynb", "Base")
    notebook = nbformat.read(path, as_version=4)
    exit_output = new_output("error", ename="SystemExit", evalue="0", traceback=[])
    notebook.cells.append(new_code_cell("sys.exit(0)", outputs=[exit_output]))
    nbformat.write(notebook, path)
    assert Page(export_html([path], tmp_path / "html", "a run").read_text()).statuses() == ["ran"]


def test_a_notebook_cut_short_is_listed_without_a_page(tmp_path, run_notebooks):
    run_notebooks[1].write_text('{"cells": [', encoding="utf-8")  # a write that never finished
    index = export_html(run_notebooks[:2], tmp_path / "html", "a run")
    assert Page(index.read_text(encoding="utf-8")).statuses() == ["ran", "unreadable"]
    assert not (tmp_path / "html" / "02_data_curation.html").exists()
    index = export_html(
        run_notebooks[:2],
        tmp_path / "html",
        "a run",
        {"01_base_model": 1.0, "02_data_curation": 2.0},
        failed="02_data_curation",
    )
    assert Page(index.read_text(encoding="utf-8")).text_rows()[1] == "2 02_data_curation failed 0:02 (2.0 s)"


def fake_papermill(fail: str | None = None):
    """A ``run_notebook`` stand-in: writes an executed-looking notebook; raises for ``fail`` after writing it."""

    def run_notebook(source: Path, output: Path, parameters: dict, mode: str) -> float:
        assert parameters["profile"] == "smoke"
        executed_notebook(output, source.stem, plot=True, fails=source.stem == fail)
        if source.stem == fail:
            raise RuntimeError(f"{source.stem} failed")
        return 1.5

    return run_notebook


@pytest.fixture
def lessons(tmp_path):
    names = ["01_one", "02_two", "03_three"]
    for name in names:
        nbformat.write(new_notebook(cells=[new_code_cell("pass")]), tmp_path / f"{name}.ipynb")
    return [str(tmp_path / f"{name}.ipynb") for name in names]


def curriculum(tmp_path, lessons, *flags):
    return ["curriculum", "--profile", "smoke", "--run-dir", str(tmp_path / "run"), "--only", *lessons, *flags]


def test_curriculum_writes_the_html_index(tmp_path, lessons, monkeypatch, capsys):
    monkeypatch.setattr(curriculum_runner, "run_notebook", fake_papermill())
    assert cli.main(curriculum(tmp_path, lessons)) == 0
    index = tmp_path / "run" / "html" / "index.html"
    assert capsys.readouterr().out.splitlines()[-1] == f"HTML pages of the executed notebooks: {index}"
    page = Page(index.read_text(encoding="utf-8"))
    assert page.title == "ftlib curriculum: support_tickets task, smoke profile"
    assert page.links == ["01_one.html", "02_two.html", "03_three.html"]
    assert all("data:image/png;base64," in (index.parent / link).read_text() for link in page.links)


def test_a_failed_curriculum_still_writes_the_index_with_the_failure(tmp_path, lessons, monkeypatch, capsys):
    monkeypatch.setattr(curriculum_runner, "run_notebook", fake_papermill(fail="02_two"))
    with pytest.raises(RuntimeError, match="02_two failed"):
        cli.main(curriculum(tmp_path, lessons))
    index = tmp_path / "run" / "html" / "index.html"
    assert f"HTML pages of the executed notebooks: {index}" in capsys.readouterr().out
    page = Page(index.read_text(encoding="utf-8"))
    assert page.links == ["01_one.html", "02_two.html"]
    assert page.statuses() == ["ran", "failed at cell 4", "not run"]
    assert not (tmp_path / "run" / "curriculum_timings.json").exists()  # as before: written when all ran


def test_no_html_skips_the_pages(tmp_path, lessons, monkeypatch, capsys):
    monkeypatch.setattr(curriculum_runner, "run_notebook", fake_papermill())
    assert cli.main(curriculum(tmp_path, lessons, "--no-html")) == 0
    assert not (tmp_path / "run" / "html").exists()
    assert "HTML pages" not in capsys.readouterr().out
