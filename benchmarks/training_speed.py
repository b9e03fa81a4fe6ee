"""Training speed and memory: ftlib against the plain recipe, LoRA against full fine-tuning, QLoRA against LoRA.

Usage (from the repository root, after ``make test`` or ``make curriculum`` built ``.venv``)::

    .venv/bin/python benchmarks/training_speed.py [--steps 16] [--batch 8]

Every variant trains the embedded default model on the same curated ``support_tickets`` train
split with the same hyperparameters and seed, in a fresh child process (so each peak RSS is its
own and the plain recipe keeps torch's default threads). The parent measures the fp32 matmul
peak of this machine in the same run and prints:

* useful (non-pad) tokens/s of ftlib LoRA / the plain ``Trainer`` + ``peft`` recipe, with both final val losses;
* MFU of ftlib LoRA under the 4N convention (forward 2N + backward to activations 2N; no weight gradients);
* LoRA / full fine-tuning tokens/s;
* QLoRA / LoRA peak memory (RSS on CPU, CUDA max allocated on a GPU), also with gradient checkpointing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ftlib.core.config import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASE_MODEL = "smollm2-135m-instruct"
LEARNING_RATE = {"lora": 4e-4, "qlora": 4e-4, "plain": 4e-4, "full": 5e-5}


def hyperparameters(variant: str, steps: int, batch: int) -> dict:
    # lora_dropout 0: peft's LoraConfig default and ftlib's (drawing dropout masks took 18% of a CPU step).
    return dict(
        max_steps=steps,
        batch_size=batch,
        learning_rate=LEARNING_RATE[variant],
        warmup_steps=2,
        lr_scheduler="cosine",
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        max_length=256,
        seed=0,
    )


def run_ftlib(variant: str, steps: int, batch: int, checkpointing: bool, splits: dict, folder: Path) -> dict:
    from dataclasses import asdict

    from ftlib.core.tasks import SUPPORT_TICKETS
    from ftlib.engine import train

    config = TrainConfig(
        method=variant,
        eval_steps=steps + 1,
        gradient_checkpointing=checkpointing,
        **hyperparameters(variant, steps, batch),
    )
    result = train.train(
        BASE_MODEL, splits["train"], splits["val"][:48], folder / variant, config=config, task=SUPPORT_TICKETS
    )
    record = result.record
    return {
        "tokens_per_second": record.metrics.train_tokens_per_second,
        "val_loss": record.metrics.final_val_loss,
        "peak_mb": record.memory.measured.peak_mb,
        "estimate": asdict(record.memory.estimate),
        "threads": record.torch_threads,
        "base_params": record.parameters.total - record.parameters.trainable,
        "computed_share": record.metrics.computed_tokens / record.metrics.train_tokens,
    }


def run_plain(steps: int, batch: int, splits: dict, folder: Path) -> dict:
    """What a user writes from the docs: Trainer + peft, default threads, random batches padded per batch."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from ftlib.core.runs import MeasuredMemory
    from ftlib.core.tasks import SUPPORT_TICKETS
    from ftlib.data.batches import SupervisedDataset
    from ftlib.engine.models import load_tokenizer, resolve_model_source
    from ftlib.engine.trainer import PeakMemory

    settings = hyperparameters("plain", steps, batch)
    with PeakMemory() as peak:
        location = resolve_model_source(BASE_MODEL)
        tokenizer = load_tokenizer(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
        model = get_peft_model(
            model, LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
        )
        train_set = SupervisedDataset(splits["train"], tokenizer, 256, SUPPORT_TICKETS)
        val_set = SupervisedDataset(splits["val"][:48], tokenizer, 256, SUPPORT_TICKETS)
        args = TrainingArguments(
            output_dir=str(folder / "plain"),
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=settings["learning_rate"],
            lr_scheduler_type="cosine",
            warmup_steps=2,
            seed=0,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=not torch.cuda.is_available(),
            include_num_input_tokens_seen="non_padding",
            disable_tqdm=True,
            remove_unused_columns=False,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=val_set,
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        )
        output = trainer.train()
        val_loss = trainer.evaluate()["eval_loss"]
    return {
        "tokens_per_second": round(trainer.state.num_input_tokens_seen / output.metrics["train_runtime"], 1),
        "val_loss": val_loss,
        "peak_mb": MeasuredMemory(**peak.as_dict()).peak_mb,
        "threads": torch.get_num_threads(),
    }


def child(args) -> None:
    from common import curated_splits

    splits = curated_splits()
    with tempfile.TemporaryDirectory() as scratch:
        if args.variant == "plain":
            result = run_plain(args.steps, args.batch, splits, Path(scratch))
        else:
            result = run_ftlib(args.variant, args.steps, args.batch, args.checkpointing, splits, Path(scratch))
    Path(args.json).write_text(json.dumps(result))


def peak_memory_mb(result: dict) -> float:
    """A variant's measured peak, MiB (CUDA max allocated on a GPU, else peak RSS)."""
    return result["peak_mb"]


def parent(args) -> None:
    from common import run_child

    from ftlib.core.runs import EstimatedMemory
    from ftlib.core.runtime import available_cores, matmul_gflops

    cores = available_cores()
    peak = {n: matmul_gflops(n, size=1024, seconds=2.0) for n in sorted({1, cores})}
    print("fp32 matmul peak (1024^3): " + ", ".join(f"{n} thread(s) {g:.1f} GFLOP/s" for n, g in peak.items()))
    runs = {}
    plan = [("plain", False), ("lora", False), ("full", False), ("qlora", False), ("lora", True), ("qlora", True)]
    with tempfile.TemporaryDirectory() as scratch:
        for variant, checkpointing in plan:
            name = variant + (" +checkpointing" if checkpointing else "")
            started = time.perf_counter()
            extra = ["--checkpointing"] if checkpointing else []
            runs[name] = run_child(
                __file__,
                ["--variant", variant, "--steps", str(args.steps), "--batch", str(args.batch), *extra],
                Path(scratch) / f"{len(runs)}.json",
            )
            r = runs[name]
            print(
                f"{name:<20} {r['tokens_per_second']:7.1f} tok/s  val loss {r['val_loss']:.4f}  "
                f"peak {peak_memory_mb(r):7.0f} MB  threads {r['threads']}  ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    lora, plain, full, qlora = runs["lora"], runs["plain"], runs["full"], runs["qlora"]
    n_params = lora["base_params"]  # the base model, adapters aside
    achieved = 4 * n_params * lora["tokens_per_second"] / 1e9
    hardware = achieved * lora["computed_share"]
    print("\nratios (targets in brackets)")
    print(
        f"  ftlib LoRA / plain recipe, useful tokens/s: {lora['tokens_per_second'] / plain['tokens_per_second']:.2f}x"
        f" [>= 1.5]; final val loss {lora['val_loss']:.4f} vs {plain['val_loss']:.4f}"
    )
    print(
        f"  MFU, 4N convention (N = {n_params / 1e6:.1f}M): {achieved:.1f} GFLOP/s of "
        f"{peak[lora['threads']]:.1f} measured on {lora['threads']} thread(s) = "
        f"{100 * achieved / peak[lora['threads']]:.0f}% [>= 40%]; counting only the tokens really run "
        f"({100 * lora['computed_share']:.0f}%: the shared prefix runs once per batch) "
        f"{100 * hardware / peak[lora['threads']]:.0f}%"
    )
    print(f"  LoRA / full fine-tuning tokens/s: {lora['tokens_per_second'] / full['tokens_per_second']:.2f}x [>= 1.5]")
    print(
        f"  QLoRA / LoRA peak memory: {peak_memory_mb(qlora) / peak_memory_mb(lora):.2f}x [<= 0.6]; with gradient"
        f" checkpointing "
        f"{peak_memory_mb(runs['qlora +checkpointing']) / peak_memory_mb(runs['lora +checkpointing']):.2f}x"
    )
    print("\nwhere the peak goes (ftlib.engine.memory estimate, GB)")
    for name in ("lora", "qlora", "lora +checkpointing", "qlora +checkpointing"):
        estimate = EstimatedMemory(**runs[name]["estimate"])
        parts = ", ".join(f"{key} {value:.2f}" for key, value in estimate.components_gb.items() if value)
        print(
            f"  {name:<21} total {estimate.total_gb:.2f} (measured {peak_memory_mb(runs[name]) * 2**20 / 1e9:.2f}):"
            f" {parts}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--variant", choices=["plain", "lora", "qlora", "full"], help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    child(args) if args.variant else parent(args)


if __name__ == "__main__":
    main()
