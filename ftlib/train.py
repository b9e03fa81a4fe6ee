"""LoRA and QLoRA fine-tuning on ``transformers.Trainer`` + ``peft``, with a run manifest."""

from __future__ import annotations

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
from transformers import Trainer, TrainingArguments, set_seed

from ftlib.data import IGNORE_INDEX, PaddingCollator, SupervisedDataset, records_hash
from ftlib.models import count_parameters, load_model
from ftlib.runtime import DeviceChoice, pick_device
from ftlib.tasks import Task

TARGET_PRESETS = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all-linear": "all-linear",
}
METHODS = ("lora", "qlora", "full")
TRACKED_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "ftlib")


@dataclass
class TrainConfig:
    """Hyperparameters of one LoRA/QLoRA run."""

    method: str = "lora"  # "lora", "qlora" or "full" (every weight trains: the baseline LoRA is measured against)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # on CPU, dropout's random masks took 18% of a LoRA step (profiled)
    target_modules: str = "all-linear"  # a key of TARGET_PRESETS
    learning_rate: float = 2e-4
    max_steps: int = 100
    batch_size: int = 8
    grad_accum: int = 1
    warmup_steps: int = 5
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    eval_steps: int = 25
    eval_batch_size: int = 16
    max_length: int = 256
    gradient_checkpointing: bool = False
    seed: int = 0

    def validate(self) -> None:
        problems = []
        if self.method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.target_modules not in TARGET_PRESETS:
            problems.append(f"target_modules must be one of {list(TARGET_PRESETS)}, not {self.target_modules!r}")
        for name in ("lora_r", "max_steps", "batch_size", "grad_accum", "eval_steps", "eval_batch_size", "max_length"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 < self.learning_rate < 1:
            problems.append(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.warmup_steps < self.max_steps:
            problems.append(f"warmup_steps ({self.warmup_steps}) must be >= 0 and below max_steps ({self.max_steps})")
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems))


@dataclass
class TrainResult:
    """What a run produced: the model in memory, its history and where its files are."""

    model: PeftModel
    tokenizer: object
    history: dict
    manifest: dict
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


def history_from_log(log_history: list[dict]) -> dict:
    """Split Trainer's log into train-loss-per-step and val-loss-per-eval series."""
    train = [{"step": e["step"], "loss": e["loss"]} for e in log_history if "loss" in e]
    val_by_step = {e["step"]: e["eval_loss"] for e in log_history if "eval_loss" in e}  # the final eval may repeat a step
    return {"train": train, "val": [{"step": step, "loss": loss} for step, loss in val_by_step.items()]}


def answer_only_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Next-token cross-entropy when the model returned logits for the answer positions only.

    The logits are ``(n_answer_tokens, vocab)``, in the row-major order of
    ``ftlib.data.answer_positions(labels)``; the targets are the labels one position later.
    Divided by ``num_items_in_batch`` (all label tokens of an accumulated batch) when Trainer passes it,
    as ``transformers`` does, so gradient accumulation gives the same update as one big batch.
    """
    shifted = labels[:, 1:]
    targets = shifted[shifted != IGNORE_INDEX].to(outputs.logits.device)
    total = torch.nn.functional.cross_entropy(outputs.logits.float(), targets, reduction="sum")
    return total / (num_items_in_batch if num_items_in_batch is not None else targets.numel())


class FtlibTrainer(Trainer):
    """``Trainer`` that runs a batch's shared prompt prefix once, then the rows' own tokens on top of it.

    Causal attention makes the prefix's keys and values the same for every row, so the loss and the
    gradients are those of the plain forward pass (checked by a test), for ~40% less compute on the
    ticket task. Batches without ``shared_prefix_length`` take Trainer's usual path.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        prefix = int(inputs.pop("shared_prefix_length", 0))
        if prefix == 0:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels, input_ids = inputs["labels"], inputs["input_ids"]
        cache = model(input_ids=input_ids[:1, :prefix], use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(input_ids.shape[0])
        outputs = model(input_ids=input_ids[:, prefix:], attention_mask=inputs["attention_mask"],
                        past_key_values=cache, logits_to_keep=inputs["logits_to_keep"][:, prefix:], use_cache=False)
        loss = answer_only_loss(outputs, labels, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


def training_seconds(log_history: list[dict], train_runtime: float) -> float:
    """Trainer's runtime minus the validation passes run inside it: the time that throughput is about."""
    inside = []
    for entry in log_history:
        if "train_runtime" in entry:  # the summary of train(); evaluations after it are not inside
            break
        inside.append(entry.get("eval_runtime", 0.0))
    return train_runtime - sum(inside)


def attach_lora(model, config: TrainConfig):
    """Wrap a base model with fresh LoRA adapters (QLoRA: after preparing the 4-bit base).

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
    lora = LoraConfig(
        task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=TARGET_PRESETS[config.target_modules],
    )
    return get_peft_model(model, lora)


def training_arguments(config: TrainConfig, scratch_dir: Path, device: DeviceChoice) -> TrainingArguments:
    on_gpu = device.device == "cuda"
    return TrainingArguments(
        output_dir=str(scratch_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        max_steps=config.max_steps,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="no",
        report_to="none",  # no wandb login prompt
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not on_gpu,
        bf16=on_gpu and device.dtype == torch.bfloat16,
        fp16=on_gpu and device.dtype == torch.float16,
        optim="paged_adamw_8bit" if on_gpu and config.method == "qlora" else "adamw_torch",
        train_sampling_strategy="group_by_length",  # batches of similar length waste little on padding
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        prediction_loss_only=True,  # never gather full-vocabulary logits across the eval set
        dataloader_pin_memory=on_gpu,
        disable_tqdm=os.environ.get("TQDM_DISABLE") == "1",
    )


def replace_dir(partial: Path, final: Path) -> None:
    """Move a finished folder into place; the one it replaces is kept as ``<name>.previous``."""
    if final.exists():
        previous = final.with_name(final.name + ".previous")
        if previous.exists():
            shutil.rmtree(previous)
        final.rename(previous)
    partial.rename(final)


def train(
    base_model: str,
    train_records: list[dict],
    val_records: list[dict],
    output_dir: str | Path,
    config: TrainConfig | None = None,
    task: Task | None = None,
    device: DeviceChoice | None = None,
    source: str = "auto",
) -> TrainResult:
    """Fine-tune ``base_model`` with LoRA or QLoRA and save the adapter, history and manifest.

    Args:
        base_model: registry name, local folder or hub id.
        train_records, val_records: records in any shape ``ftlib.data.to_messages`` reads.
        output_dir: the run folder; ``adapter/``, ``history.json`` and ``manifest.json`` go there.
        config: hyperparameters; defaults to ``TrainConfig()``.
        task: how task-shaped records become prompts and answers.
        device: from ``pick_device()``; chosen automatically when None.
        source: where registry models come from (see ``ftlib.models.resolve_model_source``).
    """
    config = config or TrainConfig()
    config.validate()
    device = device or pick_device()
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    started = time.perf_counter()
    with PeakMemory() as peak:
        model, tokenizer = load_model(base_model, "nf4" if config.method == "qlora" else None, device, source)
        model = attach_lora(model, config)
        train_set = SupervisedDataset(train_records, tokenizer, config.max_length, task)
        val_set = SupervisedDataset(val_records, tokenizer, config.max_length, task)
        scratch = Path(output_dir.parent / f".{output_dir.name}.partial")
        if scratch.exists():
            shutil.rmtree(scratch)
        args = training_arguments(config, scratch / "trainer", device)
        # The prefix needs a KV cache, which activation checkpointing turns off; DDP wants one forward per step.
        share_prefix = not config.gradient_checkpointing and args.world_size == 1
        trainer = FtlibTrainer(
            model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
            data_collator=PaddingCollator(tokenizer.pad_token_id, answer_logits_only=True, share_prefix=share_prefix),
            compute_loss_func=answer_only_loss,
        )
        train_output = trainer.train()
        final_eval = trainer.evaluate()
    wall = time.perf_counter() - started
    history = history_from_log(trainer.state.log_history)
    train_seconds = training_seconds(trainer.state.log_history, train_output.metrics["train_runtime"])
    manifest = {
        "base_model": base_model,
        "method": config.method,
        "config": asdict(config),
        "device": device.describe(),
        "torch_threads": torch.get_num_threads(),
        "data": {"train_sha256": records_hash(train_records), "val_sha256": records_hash(val_records),
                 "train_examples": len(train_set), "val_examples": len(val_set),
                 "train_truncated": train_set.truncated, "val_truncated": val_set.truncated,
                 "dropped_without_answer_tokens": train_set.dropped_no_answer + val_set.dropped_no_answer},
        "parameters": count_parameters(model),
        "metrics": {"train_loss": train_output.training_loss, "final_val_loss": final_eval["eval_loss"],
                    "train_tokens": int(trainer.state.num_input_tokens_seen),
                    "train_seconds": round(train_seconds, 2),
                    "train_tokens_per_second": round(trainer.state.num_input_tokens_seen / train_seconds, 1)},
        "memory": peak.as_dict(),
        "wall_seconds": round(wall, 2),
        "versions": library_versions(),
    }
    weights_dir = scratch / ("model" if config.method == "full" else "adapter")
    model.save_pretrained(weights_dir)
    tokenizer.save_pretrained(weights_dir)
    shutil.rmtree(scratch / "trainer", ignore_errors=True)
    (scratch / "history.json").write_text(json.dumps(history, indent=1))
    (scratch / "manifest.json").write_text(json.dumps(manifest, indent=1))
    replace_dir(scratch, output_dir)
    return TrainResult(model, tokenizer, history, manifest, output_dir)


def load_adapter(base_model: str, adapter_dir: str | Path, quantization: str | None = None,
                 device: DeviceChoice | None = None, source: str = "auto", trainable: bool = False):
    """Load a base model and put a trained adapter on it (never ``get_peft_model`` on a trained one).

    Returns:
        ``(peft_model, tokenizer)``; pass ``trainable=True`` to keep training the adapter.
    """
    model, tokenizer = load_model(base_model, quantization, device, source)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable), tokenizer
