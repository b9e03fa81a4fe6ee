"""Training hyperparameters (``TrainConfig``) and their allowed values: light, importable without torch."""

from __future__ import annotations

from dataclasses import dataclass

from ftlib.presets import METHODS, TARGET_MODULES

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
# TrainConfig.data_order -> TrainingArguments.train_sampling_strategy
DATA_ORDERS = {
    "length-grouped": "group_by_length",  # shuffled, then batches of similar length: little padding
    "random": "random",  # shuffled every epoch
    "sequential": "sequential",  # file order: reproducible batches, e.g. to compare 1 and N processes
}


@dataclass
class TrainConfig:
    """Hyperparameters of one LoRA/QLoRA run."""

    method: str = "lora"  # "lora", "qlora" or "full" (every weight trains: the baseline LoRA is measured against)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # on CPU, dropout's random masks took 18% of a LoRA step (profiled)
    target_modules: str = "all-linear"  # a key of ftlib.presets.TARGET_MODULES
    learning_rate: float = 2e-4
    max_steps: int | None = 100  # None: train num_epochs passes over the data instead
    num_epochs: float | None = None
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
    data_order: str = "length-grouped"  # a key of DATA_ORDERS: how training batches are drawn
    save_checkpoints: bool = True  # one at each evaluation: best-model selection and resuming need them
    early_stopping_patience: int | None = None  # stop after this many evaluations without a lower val loss
    # The loss weight of the answer tokens that spell a closed-label value (the "billing" of "category":"billing");
    # every other answer token weighs 1. 1.0 trains exactly as before (no weights at all). The logged training
    # loss is then the weighted one; the validation loss stays unweighted, comparable across weights.
    label_token_weight: float = 1.0

    def validate(self) -> None:
        problems = []
        if self.method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.target_modules not in TARGET_MODULES:
            problems.append(f"target_modules must be one of {list(TARGET_MODULES)}, not {self.target_modules!r}")
        if self.data_order not in DATA_ORDERS:
            problems.append(f"data_order must be one of {', '.join(DATA_ORDERS)}, not {self.data_order!r}")
        for name in ("lora_r", "lora_alpha", "batch_size", "grad_accum", "eval_steps", "eval_batch_size", "max_length"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.max_steps is None) == (self.num_epochs is None):
            problems.append(
                f"set exactly one of max_steps ({self.max_steps}) and num_epochs ({self.num_epochs});"
                " to train by epochs, pass max_steps=None"
            )
        elif (self.max_steps or 1) < 1 or (self.num_epochs or 1) <= 0:
            problems.append(f"max_steps must be >= 1 and num_epochs > 0, got {self.max_steps} and {self.num_epochs}")
        if self.lr_scheduler not in SCHEDULERS:
            problems.append(f"lr_scheduler must be one of {', '.join(SCHEDULERS)}, not {self.lr_scheduler!r}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.early_stopping_patience is not None and (self.early_stopping_patience < 1 or not self.save_checkpoints):
            problems.append(
                "early_stopping_patience needs save_checkpoints=True and a value >= 1, got "
                f"{self.early_stopping_patience}"
            )
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 < self.learning_rate < 1:
            problems.append(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if self.warmup_steps < 0 or (self.max_steps and self.warmup_steps >= self.max_steps):
            problems.append(f"warmup_steps ({self.warmup_steps}) must be >= 0 and below max_steps ({self.max_steps})")
        if not self.label_token_weight > 0:
            problems.append(f"label_token_weight must be > 0, got {self.label_token_weight}")
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems))
