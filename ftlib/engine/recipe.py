"""The training recipe as plain library objects: the ``peft.LoraConfig`` and ``transformers.TrainingArguments`` a
``TrainConfig`` becomes, and the same run spelled out as code (lesson 03 shows it)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import TrainingArguments

from ftlib.core.config import DATA_ORDERS, TrainConfig
from ftlib.core.runtime import DeviceChoice
from ftlib.engine.adapters import lora_config, peft_target_modules


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
            "# the answer tokens only (ftlib.data.batches.SupervisedDataset), padded per batch by a collator.",
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
