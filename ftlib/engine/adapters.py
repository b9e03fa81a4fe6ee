"""LoRA adapters on a base model: attach fresh ones for training, load trained ones, merge one into its base.

Everything that uses a trained run without training (evaluation, shipping, the command line) comes here, not
through the trainer."""

from __future__ import annotations

import platform
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

from ftlib.core.config import TrainConfig
from ftlib.core.fileio import replace_dir, write_json
from ftlib.core.presets import TARGET_MODULES
from ftlib.core.runs import (
    MANIFEST,
    load_run,
)
from ftlib.core.runtime import DeviceChoice
from ftlib.engine.models import load_model

TRACKED_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "ftlib")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


@contextmanager
def peft_quietly() -> Iterator[None]:
    """Hide one warning nobody can act on: peft reads ``model.is_gradient_checkpointing`` when it wraps or loads an
    adapter, and transformers 5 answers with a FutureWarning (the alias is deprecated), in red, under every training
    and evaluation cell. Other warnings pass."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


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
    with peft_quietly():
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
    with peft_quietly():
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
