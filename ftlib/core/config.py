"""Training hyperparameters (``TrainConfig``) and their allowed values: light, importable without torch."""

from __future__ import annotations

from dataclasses import dataclass

from ftlib.core.presets import METHODS, TARGET_MODULES

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
# TrainConfig.data_order -> TrainingArguments.train_sampling_strategy
DATA_ORDERS = {
    "length-grouped": "group_by_length",  # shuffled, then batches of similar length: little padding
    "random": "random",  # shuffled every epoch
    "sequential": "sequential",  # file order: reproducible batches, e.g. to compare 1 and N processes
}
# TrainConfig.report_to: where Trainer also sends its logs. "none": only ftlib's own history.json and manifest;
# "tensorboard": event files in the run folder's ``tensorboard/`` (optional extra ``ftlib[tracking]``; see
# ftlib.engine.trainer.TENSORBOARD_DIR for why TensorBoard).
REPORTERS = ("none", "tensorboard")


@dataclass(frozen=True)
class Decoding:
    """How a model answers prompts: one object wherever answers are generated (evaluation, lesson 01's choice, the
    drift check, the cost study, the export's checks), instead of two numbers threaded through each call."""

    # Prompts per generate call. Greedy decoding on a CPU reads every weight once per step whatever the batch, so
    # larger batches are faster per prompt until memory or padding wins: 32 zero-shot prompts in one batch ran at
    # 78 tokens/s, 16 at 61 (benchmarks/generation_speed.py, one thread, two runs).
    batch_size: int = 16
    # A sequence stops at its EOS or after this many tokens. A ticket answer (JSON with a reply) takes about 60.
    max_new_tokens: int = 96

    def validate(self) -> None:
        for name in ("batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid Decoding: {name} must be >= 1, got {getattr(self, name)}")


DEFAULT_DECODING = Decoding()  # the default argument of every function that generates


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one LoRA/QLoRA run."""

    method: str = "lora"  # "lora", "qlora" or "full" (every weight trains: the baseline LoRA is measured against)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # on CPU, dropout's random masks took 18% of a LoRA step (profiled)
    target_modules: str = "all-linear"  # a key of ftlib.core.presets.TARGET_MODULES
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
    report_to: str = "none"  # a key of REPORTERS: also log to a local tracker (off by default; it never trains)

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
        if self.report_to not in REPORTERS:
            problems.append(f"report_to must be one of {', '.join(REPORTERS)}, not {self.report_to!r}")
        if not self.label_token_weight > 0:
            problems.append(f"label_token_weight must be > 0, got {self.label_token_weight}")
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems))


def training_epochs(config: TrainConfig, train_examples: int) -> float:
    """How many passes over ``train_examples`` the run makes (one process): ``num_epochs``, or
    ``max_steps x batch_size x grad_accum / train_examples`` (290 steps of 8 on 2116 examples: 1.10)."""
    if config.num_epochs is not None:
        return float(config.num_epochs)
    if train_examples < 1:
        raise ValueError(f"train_examples must be >= 1, got {train_examples}")
    return config.max_steps * config.batch_size * config.grad_accum / train_examples


def training_steps(config: TrainConfig, train_examples: int) -> int:
    """The optimizer steps of the run (one process): ``max_steps``, or the steps ``num_epochs`` passes take."""
    if config.max_steps is not None:
        return config.max_steps
    per_epoch = -(-train_examples // (config.batch_size * config.grad_accum))  # the last batch may be short
    return max(1, round(per_epoch * config.num_epochs))


def config_rows(config: TrainConfig, train_examples: int) -> list[dict]:
    """The run's whole configuration as table rows (setting, value, what it does), steps also counted in epochs.

    Every field of ``TrainConfig`` gets a row, plus the derived effective batch, the LoRA scale alpha/r and the
    epochs. Figures are this config's own; nothing is measured here.
    """
    lora = config.method != "full"
    not_used = "not used: a full fine-tune has no adapters"
    effective = config.batch_size * config.grad_accum
    steps = training_steps(config, train_examples)
    epochs = training_epochs(config, train_examples)
    modules = ", ".join(TARGET_MODULES.get(config.target_modules, ()))

    def row(setting, value, explanation):
        shown = f"{value:g}" if isinstance(value, float) else str(value)  # 2e-4 stays 2e-4, not 0.000
        return {"setting": setting, "value": shown, "what it does": explanation}

    return [
        row(
            "method",
            config.method,
            {
                "lora": "freeze the base model, train low-rank adapters next to its linear layers",
                "qlora": "LoRA on a base model stored in 4-bit NF4",
                "full": "train every weight of the model",
            }.get(config.method, ""),
        ),
        row("lora_r", config.lora_r, "rank of each adapter B·A: its size and capacity" if lora else not_used),
        row("lora_alpha", config.lora_alpha, "the update B·A is scaled by alpha / r" if lora else not_used),
        row(
            "LoRA scale (alpha / r)",
            config.lora_alpha / config.lora_r,
            "how strongly the adapters' update adds to the frozen weights" if lora else not_used,
        ),
        row(
            "lora_dropout",
            config.lora_dropout,
            "share of the adapters' inputs zeroed at random during training (0: none)" if lora else not_used,
        ),
        row(
            "target_modules",
            config.target_modules,
            f"the layers that get adapters: {modules}" if lora else not_used,
        ),
        row("learning_rate", config.learning_rate, "the peak step size of AdamW, reached after warmup"),
        row("lr_scheduler", config.lr_scheduler, "how the learning rate falls from its peak to the last step"),
        row("warmup_steps", config.warmup_steps, "steps over which the learning rate climbs from 0 to its peak"),
        row(
            "max_steps",
            config.max_steps,
            "optimizer steps to train" if config.max_steps is not None else "None: num_epochs decides",
        ),
        row(
            "num_epochs",
            config.num_epochs,
            "passes over the training data" if config.num_epochs is not None else "None: max_steps decides",
        ),
        row("batch_size", config.batch_size, "examples in one forward and backward pass (the micro-batch)"),
        row("grad_accum", config.grad_accum, "micro-batches whose gradients add up before one optimizer step"),
        row("effective batch", effective, "batch_size x grad_accum: examples per optimizer step"),
        row("training examples", train_examples, "the train split the run reads"),
        row(
            "epochs",
            f"{epochs:.2f}",
            f"{steps} steps x {effective} examples / {train_examples} examples: passes over the training data",
        ),
        row("weight_decay", config.weight_decay, "AdamW's pull of each trained weight towards 0 (0: none)"),
        row("max_length", config.max_length, "tokens per example; longer examples are cut"),
        row("eval_steps", config.eval_steps, "steps between two validation losses (and checkpoints)"),
        row("eval_batch_size", config.eval_batch_size, "examples per batch when scoring validation"),
        row(
            "gradient_checkpointing",
            config.gradient_checkpointing,
            "recompute activations in the backward pass: less memory, more compute",
        ),
        row("seed", config.seed, "seeds the adapters' initialisation and the data order: a rerun repeats"),
        row("data_order", config.data_order, "how training batches are drawn (length-grouped: little padding)"),
        row(
            "save_checkpoints",
            config.save_checkpoints,
            "a checkpoint at each evaluation: the run ends on the lowest validation loss and can resume",
        ),
        row(
            "early_stopping_patience",
            config.early_stopping_patience,
            "stop after this many evaluations without a lower validation loss (None: never)",
        ),
        row(
            "label_token_weight",
            config.label_token_weight,
            "loss weight of the answer tokens that spell a label value (1.0: plain loss)",
        ),
        row(
            "report_to",
            config.report_to,
            "also log losses to a local tracker (tensorboard: event files in the run folder; none: off)",
        ),
    ]
