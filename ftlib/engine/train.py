"""LoRA and QLoRA fine-tuning on ``transformers.Trainer`` + ``peft``, with a run manifest."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from peft import PeftModel
from transformers import EarlyStoppingCallback, PrinterCallback, set_seed
from transformers.trainer_utils import TrainOutput

from ftlib.core.config import TrainConfig
from ftlib.core.fileio import replace_dir, write_json
from ftlib.core.runs import (
    MANIFEST,
    CheckpointSummary,
    DataSummary,
    EstimatedMemory,
    MeasuredMemory,
    ParentRun,
    RunMemory,
    RunMetrics,
    RunRecord,
    last_complete_checkpoint,
    load_run,
    scratch_folder,
)
from ftlib.core.runtime import DeviceChoice, pick_device
from ftlib.core.tasks import Task
from ftlib.data.batches import PaddingCollator, SupervisedDataset
from ftlib.data.records import check_labels, records_hash
from ftlib.engine.adapters import attach_lora, library_versions
from ftlib.engine.memory import MemoryEstimate, estimate_memory, model_config_for, workload_from_records
from ftlib.engine.models import count_parameters, load_model, load_tokenizer
from ftlib.engine.recipe import training_arguments
from ftlib.engine.trainer import (
    FtlibTrainer,
    InterruptGuard,
    PeakMemory,
    StepProgress,
    StopAfterSteps,
    answer_only_loss,
    history_from_log,
    last_step_evaluation,
    log_to_run_folder,
    training_seconds,
)


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


def resumable_checkpoint(scratch: Path, key: dict) -> str:
    """The checkpoint an interrupted run resumes from: its scratch folder's last whole one, of the same run.

    Raises:
        FileNotFoundError: no checkpoint to resume from.
        ValueError: the checkpoint belongs to another config or other data.
    """
    key_file = scratch / "run_key.json"
    checkpoint = last_complete_checkpoint(scratch / "trainer")
    if checkpoint is None or not key_file.is_file():
        raise FileNotFoundError(
            f"nothing to resume: {scratch / 'trainer'} holds no complete checkpoint; run without --resume"
        )
    saved = json.loads(key_file.read_text())
    changed = [name for name in key if saved.get(name) != key[name]]
    if changed:
        raise ValueError(
            f"cannot resume from {checkpoint}: {', '.join(changed)} changed since it was written "
            f"({key_file}); run without resume to start over"
        )
    return checkpoint


def prepare_scratch(scratch: Path, resume: bool, key: dict) -> str | None:
    """Empty the scratch folder for a new run, or find the checkpoint to resume from (``resumable_checkpoint``).

    Returns:
        The last checkpoint's path when resuming, else None.
    """
    key_file = scratch / "run_key.json"
    if resume:
        return resumable_checkpoint(scratch, key)
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
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"{output_dir} is a file; a run writes a folder there")
    if resume:  # before the tokenizer and the model: a run with nothing to resume fails in a second
        resumable_checkpoint(scratch_folder(output_dir), run_key(base_model, config, train_records, val_records))
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
    scratch = scratch_folder(plan.output_dir)
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
        callbacks=[StepProgress(total=config.stop_after_steps), InterruptGuard()]
        + ([EarlyStoppingCallback(config.early_stopping_patience)] if config.early_stopping_patience else [])
        + ([StopAfterSteps(config.stop_after_steps)] if config.stop_after_steps else []),
    )
    trainer.remove_callback(PrinterCallback)  # with disable_tqdm it would print every step's log dict
    log_to_run_folder(trainer, scratch)
    return PreparedRun(model, tokenizer, train_set, val_set, trainer, scratch, checkpoint)


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
        parameters=count_parameters(run.model),
        checkpoints=CheckpointSummary(
            resumed_from=Path(run.checkpoint).name if run.checkpoint else None,
            best_step=state.best_global_step,
            best_val_loss=state.best_metric,
            steps_run=state.global_step,
            stopped_early=state.global_step < (config.stop_after_steps or args.max_steps),
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
