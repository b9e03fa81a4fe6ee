"""Small helpers that keep the notebooks to narrative, one call and a picture."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ftlib.core.fileio import write_json
from ftlib.core.runs import MANIFEST, RunRecord, load_run
from ftlib.core.runtime import DeviceChoice, configure_cpu_threads, pick_device
from ftlib.core.tasks import Task, get_task, raw_data_file
from ftlib.data.field_test import field_half
from ftlib.data.records import read_jsonl, read_records
from ftlib.engine.plan import GpuPlan
from ftlib.engine.profiles import Profile, RunPaths, resolve_run, run_paths, run_summary

SPLITS = ("train", "val", "test")


@dataclass
class Lesson:
    """What every notebook needs: the resolved profile, the task, the device and the run folders."""

    profile: Profile
    dataset: str  # as given: a built-in task's name or a task spec file's path
    task: Task
    device: DeviceChoice
    paths: RunPaths
    threads: int | None
    plan: GpuPlan | None = None  # on a CUDA GPU with the gpu profile: the model, method and batch chosen for it

    def summary(self) -> str:
        threads = f", {self.threads} CPU thread(s)" if self.threads else ""
        return (
            f"profile={self.profile.name} dataset={self.dataset} base_model={self.profile.base_model}\n"
            f"device={self.device.describe()}{threads}\nrun folder={self.paths.root}"
        )

    def run_summary(self) -> tuple[list[dict], str]:
        """The run this machine gets, as table rows and a sentence (``ftlib.engine.profiles.run_summary``)."""
        return run_summary(self.profile, self.plan, self.device.name)

    @property
    def raw_data(self) -> Path:
        """The raw records the lessons curate: the task spec's ``data`` file."""
        return raw_data_file(self.task)

    def split(self, name: str) -> list[dict]:
        """A curated split written by notebook 02, cut to the profile's size (rebuilt first if it is missing)."""
        path = self.paths.data / f"{name}.jsonl"
        if not path.exists():
            self.rebuild_splits()
        records = read_jsonl(path)
        limit = {"train": self.profile.n_train, "val": self.profile.n_val, "test": self.profile.n_test}[name]
        return records[:limit] if limit else records

    def field_test(self, half: str = "test") -> list[dict] | None:
        """One half of the task's field-test records (its spec's ``field_test``; ``ftlib.data.field_test``), cut to
        the profile's test size; None when the spec names none. They are only ever scored, never trained on: the
        lessons report the ``test`` half, and the course's defaults were chosen on the ``dev`` half."""
        if self.task.field_test_file is None:
            return None
        records = read_records(self.task.field_test_file)
        return field_half(records, half, self.task.field_test_file)[: self.profile.n_test]

    @property
    def base_quantization(self) -> str | None:
        """How a notebook loads the base model to generate with it: in 4 bits where the GPU plan trains it with
        QLoRA (its 16-bit weights need not fit that GPU: a 7B model on a T4), else unquantized."""
        return "nf4" if self.plan is not None and self.profile.method == "qlora" else None

    def rebuild_splits(self) -> None:
        """Curate the raw sample and write the splits exactly as notebook 02 does, for a notebook run on its own.

        On Colab or Kaggle each notebook may start on a fresh machine, where 02's output is gone.
        """
        from ftlib.data.curate import curated_splits
        from ftlib.data.records import write_jsonl
        from ftlib.engine.models import load_tokenizer

        print(
            f"No curated splits in {self.paths.data} (notebook 02 has not run with this run_dir, or this is a "
            f"fresh machine): rebuilding them from {self.raw_data.name} as lesson 02 does ...",
            flush=True,
        )
        tokenizer = load_tokenizer(self.profile.base_model)
        splits = curated_splits(
            read_records(self.raw_data), self.task, tokenizer, self.profile.train.max_length, source=self.raw_data.name
        )
        for split_name, records in splits.items():
            write_jsonl(records, self.paths.data / f"{split_name}.jsonl")
        print(", ".join(f"{len(records)} {split_name}" for split_name, records in splits.items()), "records written")

    def records(self, names: dict[str, str]) -> dict[str, RunRecord]:
        """``runs(names)`` read with ``load_run``: each existing run's record, by display name."""
        return {display: load_run(folder) for display, folder in self.runs(names).items()}

    def histories(self, names: dict[str, str]) -> dict[str, dict]:
        """Each existing run's loss history (its ``history.json``), by display name; a missing run is left out
        without a word (``runs`` and ``records`` say what is missing)."""
        return {
            display: json.loads((self.paths.run(key) / "history.json").read_text())
            for display, key in names.items()
            if (self.paths.run(key) / MANIFEST).exists() and (self.paths.run(key) / "history.json").exists()
        }

    def full_budget_runs(self, names: dict[str, str]) -> dict[str, Path]:
        """``runs(names)`` without the runs that trained fewer steps than the longest of them, each left out with a
        line saying why: lesson 04's QLoRA run on a CPU repeats only the first steps of lesson 03's LoRA run, and
        scoring the two side by side would compare budgets, not methods."""
        found = self.runs(names)
        steps = {display: load_run(folder).checkpoints.steps_run for display, folder in found.items()}
        longest = max(steps.values(), default=0)
        kept = {}
        for display, folder in found.items():
            if steps[display] < longest:
                print(
                    f"{display} left out: it ran {steps[display]} steps against {longest} (lesson 04 reads the"
                    " full-budget pair measured beforehand); scoring it here would compare budgets, not methods."
                )
                continue
            kept[display] = folder
        return kept

    def runs(self, names: dict[str, str]) -> dict[str, Path]:
        """The training runs of this run folder that exist, by display name; says which are missing and why.

        Args:
            names: display name -> run key in ``paths`` (e.g. ``{"LoRA": "lora"}``).
        """
        found = {}
        for display, key in names.items():
            folder = self.paths.run(key)
            if (folder / MANIFEST).exists():
                found[display] = folder
                continue
            notebook = {"lora": "03_lora", "qlora": "04_qlora"}.get(key, key)
            print(
                f"No {display} run in {folder}: run {notebook}.ipynb with the same run_dir first"
                " (on Colab each notebook may get a fresh machine: pass run_dir='drive' to every notebook to keep"
                " runs on Google Drive)."
            )
        return found


def start(
    profile: str = "auto",
    dataset: str | Path = "support_tickets",
    run_dir: str | None = None,
    base_model: str | None = None,
    max_steps: int | None = None,
    method: str | None = None,
    lesson_method: str | None = None,
) -> Lesson:
    """Resolve the notebook's parameters into a ``Lesson`` and set the device up deliberately.

    ``dataset`` is a built-in task's name or the path of a task spec file (``ftlib.core.tasks.load_task_spec``); the
    default run folder is named after the task.

    ``method`` is the notebook parameter ("lora", "qlora" or None); ``lesson_method`` is the lesson's own method
    (03: "lora", 04: "qlora"), used when ``method`` is None. On a CUDA GPU the profile follows the GPU's plan
    (``ftlib.engine.plan``), and a choice that cannot fit raises ``ftlib.engine.plan.PlanDoesNotFit`` naming what would.
    """
    task = get_task(dataset)  # a bad spec fails here, before any device or model work
    resolved, plan = resolve_run(
        profile, method or None, lesson_method, base_model=base_model or None, max_steps=max_steps or None
    )
    device = pick_device()
    threads = configure_cpu_threads() if device.device == "cpu" else None
    lesson = Lesson(
        resolved, str(dataset), task, device, run_paths(run_dir or None, resolved, task.name), threads, plan
    )
    lesson.paths.root.mkdir(parents=True, exist_ok=True)
    return lesson


def markdown_table(rows: list[dict], digits: int = 3) -> str:
    """A list of dicts as a Markdown table (floats rounded)."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])

    def cell(value):
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def show_table(rows: list[dict], digits: int = 3) -> None:
    from IPython.display import Markdown, display

    display(Markdown(markdown_table(rows, digits)))


def save_json(value, path: str | Path) -> Path:
    """Write JSON atomically next to the other run outputs (the notebooks' name for ``fileio.write_json``)."""
    return write_json(value, path)


def load_json(path: str | Path):
    return json.loads(Path(path).read_text())


def run_rows(records: dict[str, RunRecord]) -> list[dict]:
    """One row per training run: parameters, final validation loss, speed, and estimated vs measured peak memory."""
    return [record.as_row(name) for name, record in records.items()]
