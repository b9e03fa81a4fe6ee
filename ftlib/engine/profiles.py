"""Run profiles: one notebook, several sizes (CI smoke test, CPU lesson, GPU run)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from ftlib.core.config import Decoding, TrainConfig
from ftlib.core.tasks import get_task, raw_data_file
from ftlib.engine.plan import LABELS, NOTEBOOK_METHODS, GpuPlan, detect_gpu, plan_gpu


@dataclass(frozen=True)
class Profile:
    """Everything that changes between a CI smoke run, a CPU lesson and a GPU run: data sizes, the model, one
    ``TrainConfig`` and one ``Decoding``. Nothing here repeats a training field: ``train`` is the config itself."""

    name: str
    base_model: str
    n_train: int | None  # None: the whole train split
    n_val: int
    n_test: int
    train: TrainConfig  # its method is a placeholder: ``train_config`` sets the lesson's or user's
    decoding: Decoding
    method: str | None = None  # "lora" or "qlora"; None: the lesson's own (a GPU plan always sets one)

    def train_config(self, method: str | None = None, **overrides) -> TrainConfig:
        """The ``TrainConfig`` of this profile's training run, validated.

        Args:
            method: "lora", "qlora" or "full"; None takes the profile's (which a lesson or GPU plan set).
            **overrides: ``TrainConfig`` fields that replace the profile's (``seed=1``, ``lora_r=8``, ...).
        """
        method = method or self.method
        if method is None:
            raise ValueError(f"profile {self.name!r} has no method: pass method='lora', 'qlora' or 'full'")
        config = replace(self.train, method=method, **overrides)
        config.validate()
        return config

    def with_overrides(self, **overrides) -> Profile:
        """A copy with papermill-style overrides applied where each belongs: a ``Profile`` field (``base_model``,
        ``n_test``), a ``TrainConfig`` field (``max_steps``, ``learning_rate``) or a ``Decoding`` field
        (``max_new_tokens``). None values are left out, as a notebook parameter left at None means "the profile's".

        Raises:
            ValueError: a name that is none of these fields.
        """
        given = {key: value for key, value in overrides.items() if value is not None}
        own = {f.name for f in fields(Profile)} - {"train", "decoding"}
        train = {f.name for f in fields(TrainConfig)} - {"method"}
        decoding = {f.name for f in fields(Decoding)}
        unknown = sorted(set(given) - own - train - decoding)
        if unknown:
            raise ValueError(
                f"unknown profile setting(s) {', '.join(unknown)}: not a Profile, TrainConfig or Decoding field"
            )
        return replace(
            self,
            train=replace(self.train, **{k: v for k, v in given.items() if k in train}),
            decoding=replace(self.decoding, **{k: v for k, v in given.items() if k in decoding and k not in train}),
            **{k: v for k, v in given.items() if k in own},
        )


PROFILES = {
    "smoke": Profile(
        "smoke",
        "smollm2-135m-instruct",
        n_train=24,
        n_val=8,
        n_test=8,
        train=TrainConfig(
            max_steps=3,
            # 2, not 4: the mechanics are the same, and each smoke run of the test suite trains about 15 times
            # (03, 04, 06, 07, the exercises) on one core, where a step of 4 took about 7 s.
            batch_size=2,
            eval_steps=3,
            learning_rate=4e-4,
            warmup_steps=1,
            lora_r=16,
            max_length=256,
            eval_batch_size=8,
            label_token_weight=10.0,  # as the cpu profile, so CI runs the same loss
        ),
        decoding=Decoding(batch_size=8, max_new_tokens=48),
    ),
    # 290 steps: a step took 3.06 s on 2 idle cores (2 threads, the first 24 steps), so about 15 minutes of
    # training. The wider phrase banks need more than 220 steps: field urgency 0.738 at 220, 0.837 at 290; with the
    # boundary banks, 290 steps reach field category 0.965 and urgency 0.855 (benchmarks/results/quality_variants.json).
    "cpu": Profile(
        "cpu",
        "smollm2-135m-instruct",
        n_train=None,
        n_val=48,
        n_test=200,
        train=TrainConfig(
            max_steps=290,
            batch_size=8,
            eval_steps=40,
            learning_rate=1e-3,
            warmup_steps=10,
            lora_r=16,
            max_length=256,
            eval_batch_size=32,
            # The reply outnumbers the label tokens about 5 to 1 in an answer. Weighting the label tokens 10x lifted
            # urgency accuracy from 0.70 to 0.82 on the field test and from 0.69 to 0.87 on the generated test at
            # the same 220 steps (benchmarks/results/quality_variants.json: weight 1 vs 3 vs 10, one seed).
            label_token_weight=10.0,
        ),
        # 32 prompts a batch: see Decoding.batch_size for the measurement.
        decoding=Decoding(batch_size=32, max_new_tokens=80),
    ),
    "gpu": Profile(
        "gpu",
        "qwen2.5-7b-instruct",
        n_train=None,
        n_val=200,
        n_test=300,
        train=TrainConfig(
            max_steps=400,
            batch_size=16,
            eval_steps=50,
            learning_rate=2e-4,
            warmup_steps=20,
            lora_r=16,
            max_length=512,
            eval_batch_size=32,
            # label_token_weight stays 1.0: the weight was measured on the 135M model's short CPU budget only.
        ),
        decoding=Decoding(batch_size=32, max_new_tokens=96),
    ),
}


def resolve_profile(
    name: str = "auto", method: str | None = None, lesson_method: str | None = None, **overrides
) -> Profile:
    """Pick a profile by name and apply non-None overrides (papermill parameters).

    ``auto`` means ``$FTLIB_PROFILE`` when set (how CI runs notebooks through nbval, which cannot
    pass parameters), else ``gpu`` on a CUDA machine and ``cpu`` elsewhere. On a CUDA machine the ``gpu``
    profile follows the plan for the GPU found (``resolve_run``).
    """
    return resolve_run(name, method, lesson_method, **overrides)[0]


def resolve_run(
    name: str = "auto", method: str | None = None, lesson_method: str | None = None, **overrides
) -> tuple[Profile, GpuPlan | None]:
    """The profile, and for the ``gpu`` profile on a CUDA machine the ``ftlib.engine.plan.GpuPlan`` it follows.

    Args:
        name: a key of ``PROFILES`` or "auto".
        method: the user's "lora" or "qlora"; it wins over ``lesson_method``.
        lesson_method: the lesson's own method (03: "lora", 04: "qlora"); None where the lesson lets the plan choose.
        **overrides: non-None values replace the profile's (``base_model``, ``max_steps``, ...: see
            ``Profile.with_overrides``). On a GPU the plan picks the model, method, micro-batch, accumulation and
            checkpointing around the user's choices.

    Raises:
        ftlib.engine.plan.PlanDoesNotFit: the user's model or method cannot fit the GPU found; the message names what
        would.
    """
    if name == "auto":
        name = os.environ.get("FTLIB_PROFILE") or ("gpu" if torch.cuda.is_available() else "cpu")
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}: choose one of {', '.join(PROFILES)} or 'auto'")
    chosen = method or lesson_method
    if chosen is not None and chosen not in NOTEBOOK_METHODS:
        raise ValueError(f"method must be one of {', '.join(NOTEBOOK_METHODS)} or None, not {chosen!r}")
    profile = replace(PROFILES[name].with_overrides(**overrides), method=chosen)
    gpu = detect_gpu() if name == "gpu" else None
    if gpu is None:
        return profile, None
    plan = plan_gpu(gpu, profile.train, chosen, overrides.get("base_model"))
    # Generation batches no larger than validation's: the plan sized that to fit beside the training step.
    decoding = replace(profile.decoding, batch_size=min(profile.decoding.batch_size, plan.config.eval_batch_size))
    return replace(profile, base_model=plan.base_model, method=plan.method, train=plan.config, decoding=decoding), plan


def run_summary(profile: Profile, plan: GpuPlan | None, device_name: str) -> tuple[list[dict], str]:
    """The run this machine gets, as table rows and a sentence: the GPU plan, or the CPU profile's run."""
    if plan is not None:
        return [plan.row()], (
            plan.reason + " GPU figures are estimates from the model's shape, not measured here; "
            "before loading, training checks the estimate of the real data against free memory."
        )
    method = LABELS[profile.method] if profile.method else "LoRA in lesson 03, QLoRA in lesson 04"
    row = {
        "device": device_name,
        "profile": profile.name,
        "model": profile.base_model,
        "method": method,
        "batch x accumulation": f"{profile.train.batch_size} x {profile.train.grad_accum}",
        "checkpointing": "yes" if profile.train.gradient_checkpointing else "no",
        "steps": profile.train.max_steps,
    }
    return [row], (
        f"No CUDA GPU was found: this is the {profile.name} profile's CPU run ({profile.base_model}, "
        f"{method}, fp32). No GPU plan applies here."
    )


@dataclass(frozen=True)
class RunPaths:
    """The folders of one run folder: where each lesson reads and writes."""

    root: Path  # the run folder itself
    data: Path  # lesson 02's curated splits and success bar
    lora: Path  # lesson 03's LoRA run
    qlora: Path  # lesson 04's QLoRA run
    eval: Path  # lesson 05's scores, plots and review sheet
    base: Path  # lesson 01's base-model measurements

    def run(self, key: str) -> Path:
        """A training run's folder by its key ("lora" or "qlora"), as the lessons name their runs."""
        folders = {"lora": self.lora, "qlora": self.qlora}
        if key not in folders:
            raise KeyError(f"no training run {key!r} in a run folder: choose one of {', '.join(folders)}")
        return folders[key]


def run_paths(run_dir: str | Path | None, profile: Profile, dataset: str) -> RunPaths:
    """Where each notebook reads and writes (``dataset``: the task's name, which names the default folder).

    ``run_dir`` wins (``"drive"``: a folder on Google Drive, mounted on Colab); else ``$FTLIB_RUN_DIR`` (one folder
    for a whole session, e.g. a JupyterLab server started by a test); else a git-ignored
    ``runs/<dataset>-<profile>/`` folder in the repository.
    """
    run_dir = run_dir or os.environ.get("FTLIB_RUN_DIR") or None
    if run_dir == "drive":  # Colab: runs outlive the VM (each notebook may get a fresh one)
        from ftlib.core.hosted import mount_drive

        run_dir = mount_drive() / f"{dataset}-{profile.name}"
    root = Path(run_dir).expanduser() if run_dir else project_root() / "runs" / f"{dataset}-{profile.name}"
    return RunPaths(root, root / "data", root / "lora", root / "qlora", root / "eval", root / "base")


def project_root(start: str | Path | None = None) -> Path:
    """The repository root (the folder holding ``pyproject.toml``), searched upward from ``start``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "ftlib").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


def sample_path(dataset: str | Path) -> Path:
    """The raw data file of a task (its spec's ``data``), by built-in name or spec file path.

    Raises:
        FileNotFoundError: the spec names no data file, or it does not exist.
    """
    return raw_data_file(get_task(dataset))


def field_test_path(dataset: str | Path = "support_tickets") -> Path:
    """A task's field-test set (its spec's ``field_test``); for the built-in tickets, tickets written by hand.

    Unlike ``data/samples/support_tickets.jsonl`` they do not come from the generator (no template, no slot
    filling), so they measure how a model trained on generated tickets copes with real-looking ones. They are
    never used for training: no split or training run reads them (lesson 05 only scores on them), and
    ``tests/test_field_test.py`` checks that they share no exact or near-duplicate ticket with the generator's
    output or the curated splits.

    Raises:
        FileNotFoundError: the spec names no field-test set, or the file is missing.
    """
    task = get_task(dataset)
    if task.field_test_file is None:
        raise FileNotFoundError(f"task spec {task.spec_file}: field_test: missing (no field-test set)")
    if not task.field_test_file.is_file():
        raise FileNotFoundError(f"task spec {task.spec_file}: field_test: no such file {task.field_test_file}")
    return task.field_test_file
