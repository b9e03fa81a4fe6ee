"""LoRA and QLoRA fine-tuning on ``transformers.Trainer`` + ``peft``, with a run manifest."""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import psutil
import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import TrainOutput

from ftlib.core.config import DATA_ORDERS, SCHEDULERS, TrainConfig  # noqa: F401 (re-exported)
from ftlib.core.fileio import replace_dir, write_json
from ftlib.core.presets import METHODS, TARGET_MODULES  # noqa: F401 (re-exported)
from ftlib.core.progress import LINE_INTERVAL_S, Progress
from ftlib.core.runs import (
    MANIFEST,
    CheckpointSummary,
    DataSummary,
    EstimatedMemory,
    MeasuredMemory,
    ParameterCounts,
    ParentRun,
    RunMemory,
    RunMetrics,
    RunRecord,
    load_run,
)
from ftlib.core.runtime import DeviceChoice, pick_device
from ftlib.core.tasks import Task
from ftlib.data.records import (
    IGNORE_INDEX,
    PaddingCollator,
    SupervisedDataset,
    check_labels,
    forward_with_shared_prefix,
    records_hash,
)
from ftlib.engine.memory import MemoryEstimate, estimate_memory, model_config_for, workload_from_records
from ftlib.engine.models import count_parameters, load_model, load_tokenizer

TRACKED_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "ftlib")
# TrainConfig(report_to="tensorboard") writes Trainer's logs here, inside the run folder. TensorBoard rather than
# MLflow or trackio, measured with `pip install --dry-run` against this environment: it adds 6 packages (19.3 MiB of
# wheels: tensorboard, grpcio, protobuf, Markdown, Werkzeug, tensorboard-data-server) where mlflow-skinny adds 22
# (11.6 MiB, among them fastapi, uvicorn, databricks-sdk, opentelemetry and cryptography) and trackio 13 (16.2 MiB,
# gradio_client, uvicorn, pillow...); writing needs no server, account or network (torch's SummaryWriter appends
# plain event files), and the folder is read offline with `tensorboard --logdir <run>/tensorboard`. trackio writes
# to a database under ~/.cache unless told otherwise, and MLflow to its own store: neither keeps a run's logs with it.
TENSORBOARD_DIR = "tensorboard"


@dataclass
class TrainResult:
    """What a run produced: the model in memory, its history, its record and where its files are."""

    model: PeftModel
    tokenizer: object
    history: dict
    record: RunRecord  # what manifest.json holds
    output_dir: Path
    adapter_dir: Path = field(init=False)

    def __post_init__(self):
        self.adapter_dir = self.output_dir / "adapter"


class PeakMemory:
    """Peak resident memory of this process (sampled) and CUDA's max allocated, during a block."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, psutil.Process().memory_info().rss)

    def as_dict(self) -> dict:
        result = {"peak_rss_mb": round(self.peak_rss / 2**20, 1)}
        if torch.cuda.is_available():
            result["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return result


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def entries_during_training(log_history: list[dict]) -> list[dict]:
    """Trainer's log up to the summary ``train()`` writes (the entry with ``train_loss``), without later evaluations."""
    end = next((i for i, entry in enumerate(log_history) if "train_loss" in entry), len(log_history))
    return log_history[:end]


def history_from_log(log_history: list[dict]) -> dict:
    """Split Trainer's log into train-loss-per-step and val-loss-per-eval series (training only).

    Evaluations after ``train()`` returned are left out: with best-model selection they score the
    best checkpoint, not the last step they would be plotted at.
    """
    during = entries_during_training(log_history)
    train = [{"step": e["step"], "loss": e["loss"]} for e in during if "loss" in e]
    val_by_step = {e["step"]: e["eval_loss"] for e in during if "eval_loss" in e}
    return {"train": train, "val": [{"step": step, "loss": loss} for step, loss in val_by_step.items()]}


def answer_only_loss(outputs, labels: torch.Tensor, num_items_in_batch=None, weights=None) -> torch.Tensor:
    """Next-token cross-entropy when the model returned logits for the answer positions only.

    The logits are ``(n_answer_tokens, vocab)``, in the row-major order of
    ``ftlib.data.records.answer_positions(labels)``; the targets are the labels one position later.
    Divided by ``num_items_in_batch`` (all label tokens of an accumulated batch) when Trainer passes it,
    as ``transformers`` does, so gradient accumulation gives the same update as one big batch.

    With ``weights`` (the collator's ``label_weights``, aligned with ``labels``) the loss is the weighted mean
    ``sum(w * token CE) / sum(w)`` over the answer tokens; ``num_items_in_batch`` is then the sum of the weights
    of the accumulated batch (``FtlibTrainer`` counts it so). All weights 1 give the unweighted loss.
    """
    shifted = labels[:, 1:]
    scored = shifted != IGNORE_INDEX
    targets = shifted[scored].to(outputs.logits.device)
    if weights is None:
        total = torch.nn.functional.cross_entropy(outputs.logits.float(), targets, reduction="sum")
        return total / (num_items_in_batch if num_items_in_batch is not None else targets.numel())
    token_weights = weights[:, 1:][scored].to(outputs.logits.device, torch.float)
    losses = torch.nn.functional.cross_entropy(outputs.logits.float(), targets, reduction="none")
    total = (token_weights * losses).sum()
    return total / (num_items_in_batch if num_items_in_batch is not None else token_weights.sum())


class FtlibTrainer(Trainer):
    """``Trainer`` that runs a batch's shared prompt prefix once, then the rows' own tokens on top of it.

    Causal attention makes the prefix's keys and values the same for every row, so the loss and the
    gradients are those of the plain forward pass (checked by a test), for ~40% less compute on the
    ticket task. Batches without ``shared_prefix_length`` take Trainer's usual path.

    Batches with ``label_weights`` (``TrainConfig.label_token_weight`` != 1) get the weighted answer loss of
    ``answer_only_loss`` on either path, normalized by the weight sum of the accumulated batch.
    """

    computed_tokens = 0  # non-pad tokens the training steps really ran: a shared prefix counts once per batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        prefix = int(inputs.pop("shared_prefix_length", 0))
        weights = inputs.pop("label_weights", None)
        if model.training:
            rows = inputs["input_ids"].shape[0]
            self.computed_tokens += int(inputs["attention_mask"].sum()) - prefix * (rows - 1)
        if prefix == 0:
            if weights is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # Trainer's own path (and its scaling across processes), with this batch's weights in the loss
            unweighted = self.compute_loss_func
            self.compute_loss_func = functools.partial(answer_only_loss, weights=weights)
            try:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                self.compute_loss_func = unweighted
        outputs = forward_with_shared_prefix(model, inputs, prefix)
        loss = answer_only_loss(outputs, inputs["labels"], num_items_in_batch, weights)
        return (loss, outputs) if return_outputs else loss

    def _get_num_items_in_batch(self, batch_samples: list, device):
        """Trainer's count of the label tokens in an accumulated batch; with ``label_weights``, their weight sum.

        The weight sum is the count times this process's ratio of weight to tokens: exact on one process.
        """
        count = super()._get_num_items_in_batch(batch_samples, device)
        if count is None or not batch_samples or "label_weights" not in batch_samples[0]:
            return count
        tokens = sum(int(batch["labels"][:, 1:].ne(IGNORE_INDEX).sum()) for batch in batch_samples)
        weight = sum(float(batch["label_weights"][:, 1:].sum()) for batch in batch_samples)
        return count * (weight / tokens) if tokens else count


class StepProgress(TrainerCallback):
    """Training progress through ``ftlib.core.progress``: step of total, loss, elapsed and estimated time left,
    and each validation loss; on the main process only (one report under DDP)."""

    def __init__(self, mode: str | None = None, interval: float = LINE_INTERVAL_S):
        self.mode, self.interval = mode, interval
        self.progress: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # a resumed run starts at its checkpoint's step
            self.progress = Progress(
                state.max_steps, "train", "step", initial=state.global_step, mode=self.mode, interval=self.interval
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs and "loss" in logs:  # ftlib logs every step (logging_steps=1)
            self.progress.update(state.global_step - self.progress.n, loss=logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.progress is not None and metrics and "eval_loss" in metrics:
            self.progress.note(f"validation loss {metrics['eval_loss']:.4f} at step {state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.close()
            self.progress = None  # the evaluation train() runs afterwards is not part of training


def estimate_run_memory(
    model_config, tokenizer, train_records: list[dict], config: TrainConfig, task: Task | None, device: DeviceChoice
):
    """``ftlib.engine.memory.estimate_memory`` for this run: its method, batch, and the token shape of its data."""
    workload = workload_from_records(train_records, tokenizer, task, config.max_length)
    shares_prefix = not config.gradient_checkpointing
    return estimate_memory(
        model_config,
        config.method,
        config.batch_size,
        workload.seq_len,
        device=device.device.split(":")[0],
        lora_r=config.lora_r,
        target_modules=config.target_modules,
        gradient_checkpointing=config.gradient_checkpointing,
        answer_fraction=workload.answer_fraction,
        shared_prefix=workload.shared_prefix if shares_prefix else 0,
    )


def gpu_preflight(estimate, device: DeviceChoice) -> None:
    """Refuse a GPU run that the estimate says cannot fit, before minutes of loading and an out-of-memory crash."""
    if not device.device.startswith("cuda"):
        return
    free, _ = torch.cuda.mem_get_info(torch.device(device.device))
    if estimate.total > free:
        parts = ", ".join(f"{name} {estimate.gb(name):.1f}" for name in estimate.COMPONENTS if getattr(estimate, name))
        raise MemoryError(
            f"this run needs about {estimate.gb():.1f} GB ({parts}) but {device.name} has {free / 1e9:.1f} GB free: "
            "use method='qlora', gradient_checkpointing=True, a smaller batch_size with grad_accum, or a shorter "
            "max_length"
        )


def training_seconds(log_history: list[dict], train_runtime: float) -> float:
    """Trainer's runtime minus the validation passes run inside it: the time that throughput is about."""
    return train_runtime - sum(entry.get("eval_runtime", 0.0) for entry in entries_during_training(log_history))


def peft_target_modules(preset: str) -> str | list[str]:
    """peft's ``target_modules`` for a preset of ``ftlib.core.presets.TARGET_MODULES``.

    "all-linear" stays peft's own shorthand (every linear layer but the output one, which on the Llama-style
    models ftlib trains are the seven projections of ``LORA_TARGETS``), as runs have always been configured.
    """
    return "all-linear" if preset == "all-linear" else list(TARGET_MODULES[preset])


def attach_lora(model, config: TrainConfig, adapter: str | Path | None = None):
    """Wrap a base model with fresh LoRA adapters, or a saved one to keep training.

    For QLoRA this comes after preparing the 4-bit base.

    For ``method="full"`` the model itself is returned with every parameter trainable.
    """
    if config.method == "full":
        if config.gradient_checkpointing:
            model.activation_checkpointing_enable()
        return model.requires_grad_(True)
    if config.method == "qlora":
        # Checkpointing is enabled below instead: peft 0.21 would call a deprecated transformers alias.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable()
        model.enable_input_require_grads()  # frozen embeddings otherwise cut the graph under checkpointing
    if adapter is not None:  # a trained adapter: never get_peft_model, which would start a fresh one
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    return get_peft_model(model, lora_config(config))


def lora_config(config: TrainConfig) -> LoraConfig:
    """The ``peft.LoraConfig`` of a LoRA or QLoRA run's fresh adapters (what ``attach_lora`` puts on the model)."""
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=peft_target_modules(config.target_modules),
    )


def training_arguments(config: TrainConfig, scratch_dir: Path, device: DeviceChoice) -> TrainingArguments:
    """Trainer settings for ``config``; under ``torchrun``/``accelerate launch`` they also set up DDP.

    Each process trains on ``config.batch_size`` examples per step, so the global batch is
    ``batch_size x grad_accum x world_size``. DDP runs over NCCL on GPUs and gloo on CPUs.
    """
    on_gpu = device.device.startswith("cuda")  # "cuda:N" under a distributed launcher
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    return TrainingArguments(
        output_dir=str(scratch_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        max_steps=config.max_steps or -1,
        num_train_epochs=config.num_epochs or 1,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="steps" if config.save_checkpoints else "no",
        save_steps=config.eval_steps,
        save_total_limit=2,  # the best and the last (Trainer never deletes the best one)
        load_best_model_at_end=config.save_checkpoints,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        report_to=config.report_to,  # "none" by default: no tracker, and no wandb login prompt
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not on_gpu,
        bf16=on_gpu and device.dtype == torch.bfloat16,
        fp16=on_gpu and device.dtype == torch.float16,
        optim="paged_adamw_8bit" if on_gpu and config.method == "qlora" else "adamw_torch",
        train_sampling_strategy=DATA_ORDERS[config.data_order],
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        prediction_loss_only=True,  # never gather full-vocabulary logits across the eval set
        dataloader_pin_memory=on_gpu,
        disable_tqdm=True,  # StepProgress shows training progress (bar, lines or nothing: ftlib.core.progress)
        ddp_backend=None if on_gpu or not launched else "gloo",  # None: NCCL on GPUs
        ddp_find_unused_parameters=False,  # every trainable weight gets a gradient: skip DDP's graph search
    )


# The TrainingArguments a plain-library recipe spells out (every other one is the Trainer default or plumbing).
RECIPE_ARGUMENTS = (
    "output_dir",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "max_steps",
    "num_train_epochs",
    "weight_decay",
    "optim",
    "seed",
    "data_seed",
    "train_sampling_strategy",
    "eval_strategy",
    "eval_steps",
    "per_device_eval_batch_size",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "load_best_model_at_end",
    "metric_for_best_model",
    "greater_is_better",
    "use_cpu",
    "bf16",
    "fp16",
    "report_to",
)


@dataclass(frozen=True)
class PlainRecipe:
    """A ``TrainConfig`` as the plain ``peft`` and ``transformers`` objects ``train`` builds from it."""

    config: TrainConfig
    lora: LoraConfig | None  # None for a full fine-tune
    args: TrainingArguments

    def source(self) -> str:
        """Python that builds the same ``LoraConfig`` and ``TrainingArguments`` without ftlib."""
        method = self.config.method
        lines = [
            "from peft import LoraConfig, get_peft_model",
            "from transformers import AutoModelForCausalLM, Trainer, TrainingArguments",
            "",
        ]
        if self.lora is not None:
            lines += [
                "lora = LoraConfig(",
                '    task_type="CAUSAL_LM",',
                f"    r={self.lora.r!r},",
                f"    lora_alpha={self.lora.lora_alpha!r},",
                f"    lora_dropout={self.lora.lora_dropout!r},",
                f"    target_modules={literal(peft_target_modules(self.config.target_modules))},",
                ")",
            ]
        lines.append("args = TrainingArguments(")
        for name in RECIPE_ARGUMENTS:
            if (
                name == "max_steps"
                and self.args.max_steps < 0
                or name == "num_train_epochs"
                and self.args.max_steps > 0
            ):
                continue  # one of the two decides the run's length
            value = getattr(self.args, name)
            value = getattr(value, "value", value)  # transformers' enums (SchedulerType, ...) as their strings
            if name == "report_to":
                value = "none" if value in ([], ["none"], "none") else value
            lines.append(f"    {name}={literal(value)},")
        lines.append(")")
        if method == "qlora":
            lines += [
                "# QLoRA: load the base with BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4',",
                "# bnb_4bit_use_double_quant=True) and call peft's prepare_model_for_kbit_training on it first.",
            ]
        lines.append("model = AutoModelForCausalLM.from_pretrained(BASE_MODEL)  # the base model's hub id or folder")
        if self.lora is not None:
            lines.append("model = get_peft_model(model, lora)")
        lines += [
            "# train_set, val_set: tokenized examples whose labels are -100 on the prompt, so that the loss counts",
            "# the answer tokens only (ftlib.data.records.SupervisedDataset), padded per batch by a collator.",
            "trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set)",
            "trainer.train()",
        ]
        return "\n".join(lines)


def literal(value) -> str:
    """A value as Python source, strings in double quotes as the course's code writes them."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    return repr(value)


def plain_recipe(config: TrainConfig, output_dir: str | Path, device: DeviceChoice | None = None) -> PlainRecipe:
    """The plain ``peft.LoraConfig`` and ``transformers.TrainingArguments`` that ``train`` builds for ``config``.

    Built by the same functions ``train`` calls (``lora_config``, ``training_arguments``), so they cannot drift;
    ``device`` (default: a CPU) sets the precision and optimizer arguments. ``source()`` spells them out as code.
    """
    config.validate()
    device = device or DeviceChoice("cpu", torch.float32, "CPU")
    lora = None if config.method == "full" else lora_config(config)
    return PlainRecipe(config, lora, training_arguments(config, Path(output_dir), device))


def run_key(base_model: str, config: TrainConfig, train_records: list[dict], val_records: list[dict]) -> dict:
    """What must not change between an interrupted run and its resumption."""
    settings = asdict(config)
    settings.pop("report_to")  # where logs also go changes no result: a resumed run may switch it
    return {
        "base_model": base_model,
        "config": settings,
        "train_sha256": records_hash(train_records),
        "val_sha256": records_hash(val_records),
    }


def last_complete_checkpoint(folder: Path) -> str | None:
    """The highest-step ``checkpoint-<step>`` folder whose ``trainer_state.json`` is whole, or None.

    Trainer writes that file last, after the weights, optimizer, scheduler and RNG states, and not atomically:
    a run killed while saving leaves a folder without it, or with half of it, which resuming cannot load.
    """
    steps = {}
    for path in folder.glob("checkpoint-*") if folder.is_dir() else ():
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and path.is_dir():
            steps[int(step)] = path
    for step in sorted(steps, reverse=True):
        try:
            json.loads((steps[step] / "trainer_state.json").read_text())
        except (OSError, ValueError):  # missing, or cut short mid-write
            continue
        return str(steps[step])
    return None


def prepare_scratch(scratch: Path, resume: bool, key: dict) -> str | None:
    """Empty the scratch folder for a new run, or find the checkpoint to resume from.

    Returns:
        The last checkpoint's path when resuming, else None.

    Raises:
        FileNotFoundError: ``resume`` with no checkpoint to resume from.
        ValueError: the checkpoint belongs to another config or other data.
    """
    key_file = scratch / "run_key.json"
    if resume:
        checkpoint = last_complete_checkpoint(scratch / "trainer")
        if checkpoint is None:
            raise FileNotFoundError(f"resume=True but {scratch / 'trainer'} holds no checkpoint: run without resume")
        saved = json.loads(key_file.read_text())
        changed = [name for name in key if saved.get(name) != key[name]]
        if changed:
            raise ValueError(
                f"cannot resume from {checkpoint}: {', '.join(changed)} changed since it was written "
                f"({key_file}); run without resume to start over"
            )
        return checkpoint
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    write_json(key, key_file)
    return None


@dataclass(frozen=True)
class RunPlan:
    """What preflight settled, before any model loads: the run's inputs, its device and its memory estimate."""

    base_model: str
    train_records: list[dict]
    val_records: list[dict]
    output_dir: Path
    config: TrainConfig
    task: Task | None
    device: DeviceChoice
    source: str
    resume: bool
    adapter: str | Path | None
    estimate: MemoryEstimate


@dataclass(frozen=True)
class PreparedRun:
    """The model with its adapters, the tokenized datasets and the Trainer set up to fit them."""

    model: PeftModel
    tokenizer: object
    train_set: SupervisedDataset
    val_set: SupervisedDataset
    trainer: FtlibTrainer
    scratch: Path  # the hidden ``.<name>.partial/`` folder the run is written in before it replaces output_dir
    checkpoint: str | None  # the checkpoint to resume from


@dataclass(frozen=True)
class FitResult:
    """What training returned: Trainer's summary, the final validation, the loss curves and the training time."""

    train_output: TrainOutput
    final_eval: dict
    history: dict
    train_seconds: float


def preflight(
    base_model: str,
    train_records: list[dict],
    val_records: list[dict],
    output_dir: str | Path,
    config: TrainConfig,
    task: Task | None,
    device: DeviceChoice | None,
    source: str,
    resume: bool,
    adapter: str | Path | None,
) -> RunPlan:
    """Check the config and the data and estimate memory, so a run that cannot work fails before any model loads.

    Raises:
        ValueError: an invalid config or label (see ``train``).
        MemoryError: a GPU run that the estimate says does not fit in the free memory.
    """
    config.validate()
    if task is not None:  # an out-of-schema label would train silently: refuse it before any model loads
        check_labels(train_records, task, "train_records")
        check_labels(val_records, task, "val_records")
    if adapter is not None and config.method == "full":
        raise ValueError("adapter= continues a LoRA or QLoRA adapter; a full fine-tune has none")
    device = device or pick_device()
    output_dir = Path(output_dir)
    adapter, _ = resolve_adapter(adapter)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    tokenizer = load_tokenizer(base_model, source)  # the data's token lengths: the estimate's sequence length
    estimate = estimate_run_memory(model_config_for(base_model, source), tokenizer, train_records, config, task, device)
    gpu_preflight(estimate, device)
    return RunPlan(
        base_model, train_records, val_records, output_dir, config, task, device, source, resume, adapter, estimate
    )


def prepare(plan: RunPlan) -> PreparedRun:
    """Load the model and tokenizer, attach LoRA, tokenize the datasets, set up the scratch folder and Trainer."""
    config = plan.config
    model, tokenizer = load_model(
        plan.base_model, "nf4" if config.method == "qlora" else None, plan.device, plan.source
    )
    model = attach_lora(model, config, plan.adapter)
    # Weights shape the training loss only: the validation loss stays the plain answer loss, comparable across runs.
    train_set = SupervisedDataset(
        plan.train_records, tokenizer, config.max_length, plan.task, config.label_token_weight
    )
    val_set = SupervisedDataset(plan.val_records, tokenizer, config.max_length, plan.task)
    scratch = Path(plan.output_dir.parent / f".{plan.output_dir.name}.partial")
    args = training_arguments(config, scratch / "trainer", plan.device)  # under torchrun: joins the process group
    # Only the main process empties and writes the scratch folder; resuming only reads it, so every rank
    # finds its checkpoint there. The others wait until it is ready before Trainer touches it.
    is_main = args.process_index == 0
    key = run_key(plan.base_model, config, plan.train_records, plan.val_records)
    checkpoint = prepare_scratch(scratch, plan.resume, key) if is_main or plan.resume else None
    if args.world_size > 1:
        args.distributed_state.wait_for_everyone()
    # The prefix needs a KV cache, which activation checkpointing turns off; DDP wants one forward per step.
    share_prefix = not config.gradient_checkpointing and args.world_size == 1
    trainer = FtlibTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=PaddingCollator(tokenizer.pad_token_id, answer_logits_only=True, share_prefix=share_prefix),
        compute_loss_func=answer_only_loss,
        callbacks=[StepProgress()]
        + ([EarlyStoppingCallback(config.early_stopping_patience)] if config.early_stopping_patience else []),
    )
    trainer.remove_callback(PrinterCallback)  # with disable_tqdm it would print every step's log dict
    log_to_run_folder(trainer, scratch)
    return PreparedRun(model, tokenizer, train_set, val_set, trainer, scratch, checkpoint)


def log_to_run_folder(trainer: Trainer, scratch: Path) -> None:
    """Point Trainer's TensorBoard callback (``report_to="tensorboard"``) at ``<run>/tensorboard``.

    transformers 5 writes TensorBoard logs under ``args.output_dir``, the scratch ``trainer/`` folder that
    ``publish`` deletes; in the scratch run folder they move into place with the run (and survive a resume).
    """
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(scratch / TENSORBOARD_DIR)


def resolve_adapter(adapter: str | Path | None) -> tuple[Path | None, ParentRun | None]:
    """The adapter folder to keep training and the run it belongs to.

    ``adapter`` is an adapter folder or a run folder (with ``manifest.json``), whose weights are then used. The
    parent is the run folder holding the adapter when it has a manifest; an adapter from elsewhere has none.
    """
    if adapter is None:
        return None, None
    folder = Path(adapter)
    if (folder / MANIFEST).exists():  # a run folder: its weights
        folder = folder / load_run(folder).weights_folder
    run = folder.parent
    return folder, ParentRun.of(run) if (run / MANIFEST).exists() else None


def last_step_evaluation(trainer: Trainer) -> dict | None:
    """The validation metrics logged at the last training step when the trainer keeps that step's weights.

    Then a final ``evaluate()`` would score the same weights on the same set again (the smoke profile's runs end
    on an evaluation step); None when it must run: no evaluation at the last step, or an earlier best checkpoint
    was loaded back.
    """
    state, args = trainer.state, trainer.args
    during = entries_during_training(state.log_history)
    last = next((entry for entry in reversed(during) if "eval_loss" in entry), None)
    keeps_last = not args.load_best_model_at_end or state.best_global_step in (None, state.global_step)
    if last is None or last["step"] != state.global_step or not keeps_last:
        return None
    return {key: value for key, value in last.items() if key.startswith("eval_")}


def fit(run: PreparedRun) -> FitResult:
    """Train (from the checkpoint when resuming), score the kept weights on validation, and read the history."""
    train_output = run.trainer.train(resume_from_checkpoint=run.checkpoint)
    log_history = run.trainer.state.log_history
    final_eval = last_step_evaluation(run.trainer) or run.trainer.evaluate()
    return FitResult(
        train_output,
        final_eval,
        history_from_log(log_history),
        training_seconds(log_history, train_output.metrics["train_runtime"]),
    )


def run_record(
    plan: RunPlan, run: PreparedRun, fitted: FitResult, measured: MeasuredMemory, wall_seconds: float
) -> RunRecord:
    """The manifest of a finished run: its inputs, data, parameters, checkpoints, metrics, memory and versions."""
    config, state, args = plan.config, run.trainer.state, run.trainer.args
    train_set, val_set = run.train_set, run.val_set
    return RunRecord(
        base_model=plan.base_model,
        method=config.method,
        continued_from=str(plan.adapter) if plan.adapter else None,
        config=config,
        device=plan.device.describe(),
        world_size=args.world_size,  # processes that trained together (DDP); memory below is the main one's
        global_batch_size=config.batch_size * config.grad_accum * args.world_size,
        torch_threads=torch.get_num_threads(),
        data=DataSummary(
            train_sha256=records_hash(plan.train_records),
            val_sha256=records_hash(plan.val_records),
            train_examples=len(train_set),
            val_examples=len(val_set),
            train_truncated=train_set.truncated,
            val_truncated=val_set.truncated,
            dropped_without_answer_tokens=train_set.dropped_no_answer + val_set.dropped_no_answer,
        ),
        parameters=ParameterCounts(**count_parameters(run.model)),
        checkpoints=CheckpointSummary(
            resumed_from=Path(run.checkpoint).name if run.checkpoint else None,
            best_step=state.best_global_step,
            best_val_loss=state.best_metric,
            steps_run=state.global_step,
            stopped_early=state.global_step < args.max_steps,
        ),
        metrics=RunMetrics(
            train_loss=fitted.train_output.training_loss,
            final_val_loss=fitted.final_eval["eval_loss"],
            train_tokens=int(state.num_input_tokens_seen),
            train_seconds=round(fitted.train_seconds, 2),
            train_tokens_per_second=round(state.num_input_tokens_seen / fitted.train_seconds, 1),
            computed_tokens=run.trainer.computed_tokens,
        ),
        memory=RunMemory(measured, EstimatedMemory.from_estimate(plan.estimate)),
        wall_seconds=round(wall_seconds, 2),
        versions=library_versions(),
        parent=resolve_adapter(plan.adapter)[1],
    )


def publish(
    plan: RunPlan, run: PreparedRun, fitted: FitResult, measured: MeasuredMemory, wall_seconds: float
) -> TrainResult:
    """Write weights, history and the ``RunRecord`` into the scratch folder, which then replaces the run folder."""
    record = run_record(plan, run, fitted, measured, wall_seconds)
    if run.trainer.is_world_process_zero():  # under DDP every rank holds the same weights: one writes them
        weights_dir = run.scratch / ("model" if plan.config.method == "full" else "adapter")
        run.model.save_pretrained(weights_dir)
        run.tokenizer.save_pretrained(weights_dir)
        shutil.rmtree(run.scratch / "trainer", ignore_errors=True)
        write_json(fitted.history, run.scratch / "history.json")
        record.write(run.scratch)
        replace_dir(run.scratch, plan.output_dir)
    run.trainer.accelerator.wait_for_everyone()  # no rank returns before the run folder is in place
    return TrainResult(run.model, run.tokenizer, fitted.history, record, plan.output_dir)


def train(
    base_model: str,
    train_records: list[dict],
    val_records: list[dict],
    output_dir: str | Path,
    *,
    config: TrainConfig | None = None,
    task: Task | None = None,
    device: DeviceChoice | None = None,
    source: str = "auto",
    resume: bool = False,
    adapter: str | Path | None = None,
) -> TrainResult:
    """Fine-tune ``base_model`` with LoRA or QLoRA and save the adapter, history and manifest.

    Checkpoints go to ``.<name>.partial/`` beside ``output_dir`` at every evaluation; at the end the
    weights of the lowest validation loss are kept (``load_best_model_at_end``). After an interruption,
    ``resume=True`` continues from the last checkpoint with the same loss curve, data order and schedule.
    Four phases: ``preflight`` (checks and the memory estimate), ``prepare`` (model, data, Trainer),
    ``fit`` (training) and ``publish`` (the run folder).

    Args:
        base_model: registry name, local folder or hub id.
        train_records, val_records: records in any shape ``ftlib.data.records.to_messages`` reads.
        output_dir: the run folder; ``adapter/``, ``history.json`` and ``manifest.json`` go there.
        config: hyperparameters; defaults to ``TrainConfig()``.
        task: how task-shaped records become prompts and answers.
        device: from ``pick_device()``; chosen automatically when None.
        source: where registry models come from (see ``ftlib.engine.models.resolve_model_source``).
        resume: continue the interrupted run of the same config and data from its last checkpoint.
        adapter: a saved adapter folder, or a run folder, to keep training (new data, more steps) instead of a
            fresh adapter; its rank and targets win over the config's. When it belongs to a run folder, the
            manifest names that run as ``parent`` with its data hashes (the lineage ``ftlib.measure.registry`` shows).

    Raises:
        ValueError: an invalid config, or a record whose label is outside ``task``'s label sets
            (``ftlib.data.records.DataError``, naming the record's line or position and the field).
    """
    started = time.perf_counter()
    with PeakMemory() as peak:  # the measured peak covers loading as well as training
        plan = preflight(
            base_model,
            train_records,
            val_records,
            output_dir,
            config or TrainConfig(),
            task,
            device,
            source,
            resume,
            adapter,
        )
        run = prepare(plan)
        fitted = fit(run)
    return publish(plan, run, fitted, MeasuredMemory(**peak.as_dict()), wall_seconds=time.perf_counter() - started)


def load_adapter(
    base_model: str,
    adapter_dir: str | Path,
    quantization: str | None = None,
    device: DeviceChoice | None = None,
    source: str = "auto",
    trainable: bool = False,
):
    """Load a base model and put a trained adapter on it (never ``get_peft_model`` on a trained one).

    Returns:
        ``(peft_model, tokenizer)``; pass ``trainable=True`` to keep training the adapter.
    """
    model, tokenizer = load_model(base_model, quantization, device, source)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable), tokenizer


def load_for_eval(run: str, source: str = "auto", quantization: str | None = None):
    """A run folder (with manifest.json and adapter/) or a base model name/path -> (model, tokenizer, label).

    ``quantization`` ("nf4", say) applies to a base model only: a run folder's manifest says how its base loads.
    """
    folder = Path(run)
    if (folder / MANIFEST).exists():
        record = load_run(folder)
        if record.method == "full":
            model, tokenizer = load_model(str(folder / record.weights_folder), source=source)
            return model, tokenizer, f"full fine-tune {folder.name}"
        quantization = "nf4" if record.method == "qlora" else None
        model, tokenizer = load_adapter(record.base_model, folder / record.weights_folder, quantization, source=source)
        return model, tokenizer, f"{record.method} run {folder.name}"
    model, tokenizer = load_model(run, quantization=quantization, source=source)
    return model, tokenizer, f"base model {run}" + (f" ({quantization})" if quantization else "")


def merge_and_export(
    base_model: str,
    adapter_dir: str | Path,
    output_dir: str | Path,
    device: DeviceChoice | None = None,
    source: str = "auto",
) -> Path:
    """Fold a LoRA adapter into a full-precision copy of its base and save it as a plain model.

    The base is always loaded unquantized, also for a QLoRA adapter: merging into 4-bit weights
    would round the update away and leave a model that only bitsandbytes can load. The result
    loads with ``AutoModelForCausalLM.from_pretrained(output_dir)``, with no ``peft`` needed.
    """
    model, tokenizer = load_adapter(base_model, adapter_dir, quantization=None, device=device, source=source)
    merged = model.merge_and_unload()
    output_dir = Path(output_dir)
    partial = output_dir.with_name(output_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    merged.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    write_json(
        {
            "base_model": base_model,
            "adapter": str(adapter_dir),
            "dtype": str(merged.dtype).removeprefix("torch."),
            "versions": library_versions(),
        },
        partial / "merge.json",
    )
    replace_dir(partial, output_dir)
    return output_dir
