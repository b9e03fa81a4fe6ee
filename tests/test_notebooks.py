"""The curriculum itself: structure checks, and every notebook executed by papermill (smoke profile)."""

import ast
import json
from pathlib import Path

import pytest
from conftest import NOTEBOOK_PATHS as PATHS  # tests/, on pytest's path

from ftlib.core.runs import load_run
from ftlib.course.curriculum import NOTEBOOKS

ROOT = Path(__file__).resolve().parent.parent
PARAMETERS = ["profile", "dataset", "run_dir", "base_model", "max_steps", "method"]
EXTRA_PARAMETERS = {"05_evaluation": ["ratings_file"]}  # after the shared ones


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


@pytest.mark.unit
@pytest.mark.parametrize("path", PATHS + sorted((ROOT / "notebooks" / "exercises").glob("*.ipynb")), ids=str)
def test_every_cell_has_a_unique_id(path):
    """nbformat 4.5 cell ids: JupyterLab, papermill and links to a cell need them (nbformat warns, then will fail)."""
    ids = [cell.get("id") for cell in cells(path)]
    assert None not in ids, f"{path.name}: cell {ids.index(None)} has no id"
    assert len(set(ids)) == len(ids), f"{path.name}: duplicate cell ids"


@pytest.mark.unit
@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_one_parameters_cell_of_plain_literals(path):
    tagged = [c for c in cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse(source(tagged[0]))
    names = []
    for statement in tree.body:
        assert isinstance(statement, ast.Assign), f"{path.name}: only assignments in the parameters cell"
        ast.literal_eval(statement.value)  # raises on anything but a plain literal
        names += [target.id for target in statement.targets]
    assert names == PARAMETERS + EXTRA_PARAMETERS.get(path.stem, [])


@pytest.mark.unit
@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_no_training_or_metric_logic_in_a_notebook(path):
    for cell in cells(path):
        if cell["cell_type"] != "code":
            continue
        text = source(cell)
        for forbidden in ("import torch", "from transformers", "import transformers", "from peft", "Trainer("):
            assert forbidden not in text, f"{path.name}: '{forbidden}' belongs in ftlib, not in a notebook"


@pytest.mark.integration
def test_the_lesson_pages_are_the_committed_notebooks(tmp_path):
    """docs/lessons/ is what tools/commit_outputs.py --pages makes of the committed notebooks: a lesson's text
    edited since must not leave its page behind."""
    from conftest import load_script

    tool = load_script(Path(__file__).resolve().parents[1] / "tools" / "commit_outputs.py", "commit_outputs")
    assert tool.write_pages(tmp_path) == 0
    committed = tool.HTML_DIR
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in committed.iterdir())
    for name in made:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), (
            f"docs/lessons/{name} is stale: .venv/bin/python tools/commit_outputs.py --pages"
        )


@pytest.mark.unit
@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_committed_outputs_come_from_the_current_source_of_a_named_run(path):
    """Outputs are a cpu-profile run's (tools/commit_outputs.py): every cell that shows one still has the source
    that made it, the objectives name the run, and no output is live progress, a machine's path or a warning."""
    from ftlib.course import outputs

    notebook = json.loads(path.read_text())
    stale = outputs.stale_cells(notebook)
    assert not stale, (
        f"{path.name}: cells {stale} changed since the run their outputs come from: run `make curriculum`, then "
        "`.venv/bin/python tools/commit_outputs.py` (or clear those outputs)"
    )
    shown = [output for cell in notebook["cells"] if cell["cell_type"] == "code" for output in cell["outputs"]]
    run = outputs.reference_run(notebook)
    if shown:
        assert run is not None and run.line() in source(notebook["cells"][1]), f"{path.name}: outputs of no named run"
    text = json.dumps(shown)
    for noise in ("[ftlib] ", "/tmp/", "/home/", "/work/", "Loading weights", "FutureWarning", "Traceback"):
        assert noise not in text, f"{path.name}: a committed output shows {noise!r}"


@pytest.mark.unit
def test_deterministic_cells_are_checked_by_nbval():
    checked = {
        path.stem: sum("NBVAL_CHECK_OUTPUT" in source(c) and bool(c["outputs"]) for c in cells(path)) for path in PATHS
    }
    assert checked["01_base_model"] >= 1 and checked["02_data_curation"] >= 2
    assert checked["03_lora"] >= 1 and checked["04_qlora"] >= 1 and checked["06_what_matters"] >= 1
    assert checked["07_after_training"] >= 1  # the sizes and the later batch differ by profile: pytest checks them


@pytest.mark.unit
@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_every_notebook_opens_with_objectives_and_measured_run_times(path):
    from ftlib.course.timings import run_time_text

    opening = cells(path)[1]
    assert opening["cell_type"] == "markdown" and opening["id"] == "objectives", "the objectives follow the title"
    text = source(opening)
    objectives = text.split("You will learn to:\n")[1].split("\n\n")[0].splitlines()
    assert 3 <= len(objectives) <= 4 and all(line.startswith("- ") for line in objectives)
    assert text.endswith(run_time_text(path.stem)), "the run times are ftlib.course.timings', as the workshop guide's"


def is_display(cell) -> bool:
    """A code cell that shows a table or a plot."""
    return cell["cell_type"] == "code" and ("show_table(" in source(cell) or "plots.plot_" in source(cell))


@pytest.mark.unit
@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_every_table_and_plot_is_followed_by_a_reading_note(path):
    notebook = cells(path)
    for index, cell in enumerate(notebook):
        if is_display(cell):
            after = next((c for c in notebook[index + 1 :] if c["cell_type"] == "markdown"), None)
            assert after is not None and "**Reading it.**" in source(after), (
                f"{path.name}: cell {cell['id']} shows a table or plot without a 'Reading it' note after it"
            )


ENGINE_TERMS = ("papermill", "nbval", "keyboard", "KV cache", "numel", "allocator", "CUDA context", "GGUF")
# Where a term is what the lesson teaches, not an engine detail: 07 ships the tuned model as a GGUF file (elsewhere
# GGUF is only how the course's own model arrives, which docs/profiles.md's appendix explains).
LESSON_TERMS = {"07_after_training": ("GGUF",)}


@pytest.mark.unit
@pytest.mark.parametrize("path", PATHS, ids=NOTEBOOKS)
def test_ci_and_engine_details_stay_in_the_docs_appendix(path):
    import re

    for cell in cells(path):
        text = re.sub(r"\]\([^)]*\)", "]", source(cell)).replace("# NBVAL_CHECK_OUTPUT", "")  # links name the anchor
        for term in (t for t in ENGINE_TERMS if t not in LESSON_TERMS.get(path.stem, ())):
            assert term.lower() not in text.lower(), f"{path.name}: '{term}' belongs in docs/profiles.md's appendix"
    assert (
        "## Appendix: how the notebooks run (CI, papermill, engine details)"
        in (ROOT / "docs" / "profiles.md").read_text()
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    "name, artifacts",
    [
        ("01_base_model", ["base/zero_shot_probe.json"]),
        (
            "02_data_curation",
            [
                "data/train.jsonl",
                "data/val.jsonl",
                "data/test.jsonl",
                "data/curation_report.json",
                "data/token_lengths.png",
                "data/label_distribution.png",
            ],
        ),
        ("03_lora", ["lora/adapter/adapter_model.safetensors", "lora/manifest.json", "lora/loss.png"]),
        ("04_qlora", ["qlora/adapter/adapter_model.safetensors", "qlora/manifest.json", "qlora/loss.png"]),
        (
            "05_evaluation",
            [
                "eval/metrics.json",
                "eval/metrics.png",
                "eval/loss_curves.png",
                "eval/review_sheet.csv",
                "eval/review_sheet.key.json",
            ],
        ),
        (
            "06_what_matters",
            [
                "what_matters/clean_vs_raw.json",
                "what_matters/clean_vs_raw.png",
                "what_matters/learning_curve.json",
                "what_matters/learning_curve.png",
                "what_matters/rate_and_rank.json",
                "what_matters/learning_rate.png",
                "what_matters/rank.png",
                "what_matters/summary.json",
                "what_matters/runs/raw/manifest.json",
            ],
        ),
        (
            "07_after_training",
            [
                "after/forgetting/forgetting.json",
                "after/forgetting/LoRA/manifest.json",
                "after/cost.json",
                "after/ship/model.gguf",
                "after/ship/Modelfile",
                "after/ship/export_report.json",
            ],
        ),
    ],
)
def test_notebook_runs_under_papermill(smoke_run, name, artifacts):
    run_dir, outcomes, _ = smoke_run
    if outcomes[name] is not None:
        raise outcomes[name]
    for artifact in artifacts:
        assert (run_dir / artifact).exists(), f"{name} did not write {artifact}"


@pytest.mark.integration
def test_smoke_run_uses_the_real_model_and_leaves_samples_untouched(smoke_run):
    run_dir, _, samples_unchanged = smoke_run
    assert samples_unchanged
    report = json.loads((run_dir / "data" / "curation_report.json").read_text())
    assert report["raw_file"].endswith("listings.jsonl") and report["leakage"] == []
    record = load_run(run_dir / "qlora")
    assert record.base_model == "smollm2-135m-instruct" and record.method == "qlora"
    assert record.parameters.total > 134_000_000  # 4-bit weights counted at full size
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert set(metrics) == {"base (zero-shot)", "base (few-shot)", "LoRA", "QLoRA"}
    assert len(metrics["base (few-shot)"]["few_shot"]) == 3


@pytest.mark.integration
def test_the_executed_curriculum_reads_as_html_with_every_plot_embedded(smoke_run, tmp_path):
    """The HTML pages `python -m ftlib curriculum` writes, made from the smoke run's executed notebooks."""
    import re

    from ftlib.course.report import export_html

    run_dir, outcomes, _ = smoke_run
    executed = [run_dir / path.name for path in PATHS]
    index = export_html(executed, tmp_path / "html", title="smoke run")
    page = index.read_text()
    total = 0
    for path in PATHS:
        link = f'href="{path.stem}.html"'
        assert link in page, f"{path.stem} is not linked from the index"
        html_page = (tmp_path / "html" / f"{path.stem}.html").read_text()
        plots = sum("image/png" in o.get("data", {}) for c in cells(run_dir / path.name) for o in c.get("outputs", []))
        assert len(re.findall(r"data:image/png;base64,", html_page)) >= plots, f"{path.stem}: a plot is missing"
        assert outcomes[path.stem] is not None or '<td class="status ran">ran</td>' in page
        total += plots
    assert total >= 5  # loss curves, memory, label distribution, token lengths, metrics ...


@pytest.mark.integration
def test_after_training_skips_drift_in_one_line_on_a_task_without_a_later_batch(smoke_run):
    """The listings run: only the tickets have a later-period batch; every other section of 07 still runs."""
    run_dir, outcomes, _ = smoke_run
    if outcomes["07_after_training"] is not None:
        raise outcomes["07_after_training"]
    printed = [
        "".join(output.get("text", ""))
        for cell in cells(run_dir / "07_after_training.ipynb")
        for output in cell.get("outputs", [])
    ]
    assert any(text.startswith("Drift and re-tuning skipped: only support_tickets") for text in printed)
    assert not (run_dir / "after" / "drift" / "scores.json").exists()
    assert json.loads((run_dir / "after" / "ship" / "export_report.json").read_text())["ok"]
