"""The fine-tuning methods and LoRA target presets, defined once for training (``ftlib.engine.train``), the CLI's
choices and the memory estimate (``ftlib.engine.memory``), so that the three never disagree."""

from __future__ import annotations

# Ordered by the memory a run needs, most first: the order of lesson 01's memory table.
METHODS = ("full", "lora", "qlora")
# The linear layers of a Llama-style decoder layer (Llama, Mistral, Qwen2, SmolLM2).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# TrainConfig.target_modules -> the modules that preset puts adapters on.
TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "all-linear": LORA_TARGETS,
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
}
