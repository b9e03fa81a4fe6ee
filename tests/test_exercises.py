"""The lessons' "Try this" exercises: each names a solution notebook that exists, and CI runs every solution.

A solution reads the run folder its lesson wrote and saves its answer as ``<run folder>/exercises/<solution>.json``.
The integration test runs them all on the smoke run of the notebook tests (``smoke_run`` in conftest.py: the
listings dataset), in one Python kernel whose names are cleared before each solution, so that a kernel start and
the imports are paid once; the only training (03's rank 8) runs 2 steps. Each check below asserts what its
exercise asks for.
"""

import ast
import asyncio
import json
import re
from pathlib import Path

import pytest
from conftest import NOTEBOOK_PATHS  # tests/, on pytest's path

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "notebooks" / "exercises"
SOLUTIONS = sorted(EXERCISES.glob("*.ipynb"))
LINK = re.compile(r"\]\(exercises/([^)/]+)\.ipynb\)")
SOLUTION_PARAMETERS = ["profile", "dataset", "run_dir"]  # and max_steps where the solution trains
CI_MAX_STEPS = 2  # the fewest steps the smoke profile's warm-up allows


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def try_this(path: Path) -> str:
    last = cells(path)[-1]
    assert last["cell_type"] == "markdown" and source(last).startswith("## Try this\n"), (
        f"{path.name} does not end with a '## Try this' cell"
    )
    return source(last)


def exercises(path: Path) -> list[str]:
    """The numbered exercises of a lesson's 'Try this' cell, each as one string."""
    return [item.strip() for item in re.split(r"^\d+\. ", try_this(path), flags=re.M)[1:]]


# ---------------------------------------------------------------- structure (unit)


@pytest.mark.unit
@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=[p.stem for p in NOTEBOOK_PATHS])
def test_every_lesson_ends_with_two_or_three_exercises_each_naming_its_solution(path):
    items = exercises(path)
    assert 2 <= len(items) <= 3, f"{path.name}: {len(items)} exercises"
    for item in items:
        named = LINK.findall(item)
        assert len(named) == 1, f"{path.name}: an exercise names {len(named)} solutions: {item[:60]}"
        assert named[0].startswith(f"{path.stem}-"), f"{path.name}: {named[0]} is named after another lesson"
        assert (EXERCISES / f"{named[0]}.ipynb").is_file(), f"{path.name}: no solution {named[0]}.ipynb"


@pytest.mark.unit
def test_every_solution_belongs_to_an_exercise_and_has_a_check():
    named = [stem for path in NOTEBOOK_PATHS for stem in LINK.findall(try_this(path))]
    assert len(named) == len(set(named)), "two exercises share a solution"
    files = {p.name for p in EXERCISES.iterdir() if not p.name.startswith(".")}
    assert files == {f"{stem}.ipynb" for stem in named}, "a file in notebooks/exercises/ belongs to no exercise"
    assert set(CHECKS) == set(named), "every solution needs a check below, and every check a solution"


@pytest.mark.unit
@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solutions_are_small_parameterised_notebooks_that_save_their_answer(path):
    notebook = cells(path)
    assert notebook[0]["cell_type"] == "markdown"
    assert source(notebook[0]).startswith(f"# Solution · {path.stem[:2]} · Try this ")
    tagged = [c for c in notebook if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and notebook[1] is tagged[0], f"{path.name}: one parameters cell, after the title"
    names = []
    for statement in ast.parse(source(tagged[0])).body:
        assert isinstance(statement, ast.Assign)
        ast.literal_eval(statement.value)  # plain literals only
        names += [target.id for target in statement.targets]
    assert names in (SOLUTION_PARAMETERS, SOLUTION_PARAMETERS + ["max_steps"]), f"{path.name}: {names}"
    code = [c for c in notebook if c["cell_type"] == "code"]
    assert len(code) <= 4, f"{path.name}: a solution is a few cells"
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), f"{path.name}: stored outputs"
    assert all(c.get("id") for c in notebook), f"{path.name}: a cell without an id"
    assert f'"{path.stem}.json"' in "".join(source(c) for c in code), f"{path.name} does not save {path.stem}.json"
    assert "**Reading it.**" in source(notebook[-1]), f"{path.name}: no reading of the answer at the end"


# ---------------------------------------------------------------- every solution, run (integration)


def run_solutions(run_dir: Path) -> dict[str, Exception | None]:
    """Every solution on ``run_dir`` in the smoke profile (listings), in one kernel: each one's error or None."""
    import nbformat
    import papermill
    from jupyter_client.manager import AsyncKernelManager

    kernel = AsyncKernelManager(kernel_name="python3")
    outcomes = {}
    try:
        for path in SOLUTIONS:
            notebook = nbformat.read(path, as_version=4)
            # A fresh namespace for each solution (imported modules stay loaded): a name one solution forgot
            # to define or import fails here as it would in a fresh kernel.
            notebook.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))
            parameters = {"profile": "smoke", "dataset": "listings", "run_dir": str(run_dir)}
            if "\nmax_steps = " in "".join(c.source for c in notebook.cells):
                parameters["max_steps"] = CI_MAX_STEPS
            try:
                papermill.execute_notebook(
                    notebook,
                    str(run_dir / "exercises" / path.name),
                    cwd=str(EXERCISES),
                    parameters=parameters,
                    kernel_name="python3",
                    progress_bar=False,
                    km=kernel,
                )
                outcomes[path.stem] = None
            except Exception as error:  # reported by the solution's own test
                outcomes[path.stem] = error
    finally:
        if kernel.has_kernel:
            asyncio.run(kernel.shutdown_kernel(now=True))
    return outcomes


@pytest.fixture(scope="module")
def solved(smoke_run):
    run_dir, lessons, _ = smoke_run
    (run_dir / "exercises").mkdir(exist_ok=True)
    return run_dir, lessons, run_solutions(run_dir)


@pytest.mark.integration
@pytest.mark.parametrize("stem", [p.stem for p in SOLUTIONS])
def test_solution_runs_and_answers_its_exercise(solved, stem):
    run_dir, lessons, outcomes = solved
    lesson = stem.split("-")[0]
    if lessons[lesson] is not None:
        pytest.fail(f"lesson {lesson} failed on the smoke run, so its solutions have nothing to read")
    if outcomes[stem] is not None:
        raise outcomes[stem]
    answer = json.loads((run_dir / "exercises" / f"{stem}.json").read_text())
    CHECKS[stem](answer, run_dir)


def load(run_dir: Path, name: str):
    return json.loads((run_dir / name).read_text())


def listings():
    from ftlib.core.tasks import get_task

    return get_task("listings")


def check_rule(answer, run_dir):
    from ftlib.engine.models import REGISTRY

    qlora, full = answer["qlora on T4 16 GB"], answer["full on A100 80 GB"]
    measured = load(run_dir, "base/candidates.json")
    for rule in (qlora, full):
        assert "smollm2-135m-instruct" in rule["qualifying"]
        assert rule["recommended"] in measured, "the rule recommends only a model measured here"
        assert rule["largest"] == max(rule["qualifying"], key=lambda name: REGISTRY[name].params_b)
    assert REGISTRY[qlora["largest"]].params_b > 7  # QLoRA puts a 7-8B model on a T4
    assert set(full["qualifying"]) != set(qlora["qualifying"])
    assert not {n for n in full["qualifying"] + qlora["qualifying"] if REGISTRY[n].license.startswith("Llama")}


def check_strata(answer, run_dir):
    task = listings()
    few_shot = load(run_dir, "base/candidates.json")["smollm2-135m-instruct"]["few_shot"]
    assert answer["metric"] == task.headline_metrics[0]
    assert answer["answers"] == len(few_shot["predictions"]) and len(answer["rows"]) > 1
    for row in answer["rows"]:
        assert row["low"] <= row[answer["metric"]] <= row["high"]
    assert answer["worst"] == min(answer["rows"], key=lambda row: row[answer["metric"]])[task.stratify_field]


def check_duplicates(answer, run_dir):
    assert [row["threshold"] for row in answer] == [0.5, 0.7, 0.9]
    dropped = [row["near duplicates"] + row["conflicts"] for row in answer]
    assert dropped[0] > dropped[1] >= dropped[2], "a lower threshold finds more near-duplicates"
    lesson = {step["step"]: step["dropped"] for step in load(run_dir, "data/curation_report.json")["steps"]}
    assert answer[1]["near duplicates"] == lesson["near_duplicates"], "0.7 reproduces the lesson's step"
    assert answer[0]["precision"] < answer[1]["precision"] and answer[0]["recall"] == 1.0


def check_length(answer, run_dir):
    lesson = {step["step"]: step["dropped"] for step in load(run_dir, "data/curation_report.json")["steps"]}
    assert answer["max_length"] == 160 and answer["dropped_at_profile_length"] == lesson["length"]
    assert answer["dropped"] > answer["dropped_at_profile_length"]
    rows = answer["by_stratum"]
    assert sum(row["kept before length"] - row["kept at 160"] for row in rows) == answer["dropped"] - lesson["length"]


def check_rank(answer, run_dir):
    from ftlib.core.runs import load_run

    run = load_run(run_dir / "exercises" / "03_lora-rank")
    lesson = load_run(run_dir / "lora")
    assert (run.config.lora_r, run.config.lora_alpha, run.config.max_steps) == (8, 16, CI_MAX_STEPS)
    assert 2 * run.parameters.trainable == lesson.parameters.trainable, "half the rank, half the adapters"
    history = load(run_dir, "exercises/03_lora-rank/history.json")
    assert history["train"] and history["val"], "the rank-8 run has its loss table"
    assert answer["rank 8"]["final_val_loss"] == run.metrics.final_val_loss
    assert answer["rank 16 (lesson 03)"]["final_val_loss"] == lesson.metrics.final_val_loss


def check_attention(answer, run_dir):
    from ftlib.core.runs import load_run

    linear, attention = answer["rows"]
    assert (linear["target_modules"], attention["target_modules"]) == ("all-linear", "attention")
    assert linear["trainable"] == answer["lesson_trainable"] == load_run(run_dir / "lora").parameters.trainable
    assert 0 < attention["trainable"] < linear["trainable"] / 2
    assert attention["estimated peak GB"] <= linear["estimated peak GB"]


def check_double_quant(answer, run_dir):
    double, single = answer["rows"]
    assert double["double quantization"] and not single["double quantization"]
    assert double["bits per weight"] == pytest.approx(answer["estimate_bits"], abs=0.01)
    assert single["bits per weight"] == pytest.approx(4.5, abs=0.01)  # a 32-bit scale per 64 weights
    assert 0.35 < answer["saved_bits"] < 0.39  # the QLoRA paper's 0.37
    assert answer["saved_gb_7b"] == pytest.approx(7 * answer["saved_bits"] / 8)


def check_where_it_pays(answer, run_dir):
    assert all(row["QLoRA GB"] < row["LoRA GB"] for row in answer)
    only = [row for row in answer if row["T4 only with QLoRA"]]
    assert only and all(row["params (B)"] > 7 for row in only)
    small, large = min(answer, key=lambda r: r["params (B)"]), max(answer, key=lambda r: r["params (B)"])
    assert large["LoRA / QLoRA"] > small["LoRA / QLoRA"] and large["weights share of LoRA"] > 0.8


def check_stricter_bar(answer, run_dir):
    from ftlib.measure.evaluate import SUCCESS_BAR, SuccessBar, judge, read_results

    lesson_bar = load(run_dir, SUCCESS_BAR)["thresholds"]
    written = load(run_dir, f"exercises/05_evaluation-stricter_bar/{SUCCESS_BAR}")["thresholds"]
    assert answer["bar"] == lesson_bar, "the run folder's own bar stays as lesson 02 wrote it"
    assert written == answer["stricter"] and all(lesson_bar[m] < t <= 1 for m, t in written.items())
    rank = {"no": 0, "unclear": 1, "yes": 2}
    old, new = answer["judged"]["bar"], answer["judged"]["stricter"]
    assert all(rank[n["met?"]] <= rank[o["met?"]] for o, n in zip(old, new)), "a stricter bar never judges better"
    assert answer["changed"] == [f"{o['run']} / {o['metric']}" for o, n in zip(old, new) if o["met?"] != n["met?"]]
    results = read_results(run_dir / "eval" / "metrics.json")
    for run, lows in answer["highest_met"].items():
        rows = judge({run: results[run]}, SuccessBar("listings", lows))
        assert {row["met?"] for row in rows} == {"yes"}, "the low end of the interval is the highest bar met"


def check_half_test(answer, run_dir):
    results = load(run_dir, "eval/metrics.json")
    n = len(next(iter(results.values()))["predictions"])
    assert answer["answers_to_halve"] == 4 * n
    assert len(answer["rows"]) == len(results) * len(listings().headline_metrics)
    for row in answer["rows"]:
        assert row["half"] == row["answers"] // 2 and row["half low"] <= row["half mean"] <= row["half high"]


def check_loss_or_labels(answer, run_dir):
    from itertools import combinations

    metric = answer["metric"]
    runs = {o["folder"] for name in ("clean_vs_raw", "learning_curve", "rate_and_rank")
            for o in load(run_dir, f"what_matters/{name}.json").values()}  # fmt: skip
    rows = answer["rows"]
    assert len(rows) == len(runs) and [r["val loss"] for r in rows] == sorted(r["val loss"] for r in rows)
    assert answer["pairs"] == len(rows) * (len(rows) - 1) // 2
    assert answer["disagree"] == [[a["run"], b["run"]] for a, b in combinations(rows, 2) if a[metric] < b[metric]]
    assert answer["lowest_loss"] == rows[0]["run"]


def check_test_size(answer, run_dir):
    runs = load(run_dir, "what_matters/clean_vs_raw.json")
    assert answer["answers"] == len(runs["curated"]["predictions"])
    assert [row["metric"] for row in answer["rows"]] == list(listings().headline_metrics)
    for row in answer["rows"]:
        a, b = runs["curated"]["metrics"][row["metric"]], runs["raw"]["metrics"][row["metric"]]
        assert row["separated now"] == (a["high"] < b["low"] or b["high"] < a["low"])
        if not row["separated now"] and row["difference"]:
            spread = (a["high"] - a["low"] + b["high"] - b["low"]) / 2
            assert row["test answers to separate"] == round(answer["answers"] * (spread / row["difference"]) ** 2)


def check_prompt_kinds(answer, run_dir):
    from ftlib.measure.forgetting import GENERIC_SOURCE, read_generic

    kinds = {record["id"]: record["kind"] for record in read_generic("measure")}
    study = load(run_dir, "after/forgetting/forgetting.json")
    lora = [d for d in study["reports"]["LoRA"]["divergences"] if d["source"] == GENERIC_SOURCE]
    rows = answer["rows"]
    assert {row["kind"] for row in rows} == {kinds[d["id"]] for d in lora}
    assert sum(row["prompts"] for row in rows) == len(lora)
    assert [row["mean KL per token"] for row in rows] == sorted(
        (row["mean KL per token"] for row in rows), reverse=True
    )
    for row in rows:
        group = [d["kl"] for d in lora if kinds[d["id"]] == row["kind"]]
        assert row["mean KL per token"] == pytest.approx(sum(group) / len(group))
    assert answer["most_moved"] == rows[0]["kind"]
    assert answer["answer_moves_more"] == (sum(d["kl_continuation"] for d in lora) > sum(d["kl"] for d in lora))


def check_your_price(answer, run_dir):
    measured = load(run_dir, "after/cost.json")["measured"]
    assert [row["setup"] for row in answer["rows"]] == [m["name"] for m in measured]
    for row, m in zip(answer["rows"], measured):
        hours = m["cpu_seconds_per_1000"] * answer["tickets"] / 1000 / 3600
        assert row["CPU-hours"] == pytest.approx(hours) and row["USD (estimate)"] == pytest.approx(
            hours * answer["price"]
        )
    assert answer["saved"] == pytest.approx(answer["rows"][1]["USD (estimate)"] - answer["rows"][0]["USD (estimate)"])


CHECKS = {
    "01_base_model-rule": check_rule,
    "01_base_model-strata": check_strata,
    "02_data_curation-duplicates": check_duplicates,
    "02_data_curation-length": check_length,
    "03_lora-rank": check_rank,
    "03_lora-attention": check_attention,
    "04_qlora-double_quant": check_double_quant,
    "04_qlora-where_it_pays": check_where_it_pays,
    "05_evaluation-stricter_bar": check_stricter_bar,
    "05_evaluation-half_test": check_half_test,
    "06_what_matters-loss_or_labels": check_loss_or_labels,
    "06_what_matters-test_size": check_test_size,
    "07_after_training-prompt_kinds": check_prompt_kinds,
    "07_after_training-your_price": check_your_price,
}
