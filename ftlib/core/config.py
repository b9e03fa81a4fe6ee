"""Training hyperparameters (``TrainConfig``) and their allowed values: light, importable without torch."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

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
    # JSON answers that are scored (evaluation): once an answer can no longer parse (``parse_answer``: text before its
    # opening brace, or after its closing one), its score is decided, and it stops this many tokens later: enough to
    # read what the model wrote instead of JSON. A base model's zero-shot answers are such prose; they ran to
    # max_new_tokens. Every kept token is the one plain ``model.generate`` gives. None: run to EOS or the limit.
    invalid_tail_tokens: int | None = 24

    def validate(self) -> None:
        for name in ("batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid Decoding: {name} must be >= 1, got {getattr(self, name)}")
        tail = self.invalid_tail_tokens
        if tail is not None and tail < 0:
            raise ValueError(f"Invalid Decoding: invalid_tail_tokens must be >= 0 or None, got {tail}")


DEFAULT_DECODING = Decoding()  # the default argument of every function that generates


METHOD_HELP = {  # TrainConfig.method's values, with what each trains
    "lora": "freeze the base model, train low-rank adapters next to its linear layers",
    "qlora": "LoRA on a base model stored in 4-bit NF4",
    "full": "train every weight of the model (the baseline LoRA is measured against)",
}


def _option(default, help: str, lora: bool = False):
    """A ``TrainConfig`` field with its help text (TRL's convention); ``lora``: only LoRA and QLoRA read it."""
    return field(default=default, metadata={"help": help, "lora": lora})


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one LoRA, QLoRA or full fine-tuning run. Each field's ``metadata["help"]`` says what it
    does: lesson 03's table (``config_rows``) and the command line's flags show it."""

    method: str = _option("lora", "; ".join(f"{name}: {text}" for name, text in METHOD_HELP.items()))
    lora_r: int = _option(16, "rank of each adapter B·A: its size and capacity", lora=True)
    lora_alpha: int = _option(32, "the update B·A is scaled by alpha / r", lora=True)
    # On CPU, dropout's random masks took 18% of a LoRA step (profiled): off by default.
    lora_dropout: float = _option(
        0.0, "share of the adapters' inputs zeroed at random during training (0: none)", lora=True
    )
    target_modules: str = _option(
        "all-linear", "the layers that get adapters (a key of ftlib.core.presets.TARGET_MODULES)", lora=True
    )
    learning_rate: float = _option(2e-4, "the peak step size of AdamW, reached after warmup")
    max_steps: int | None = _option(100, "optimizer steps to train (None: num_epochs decides)")
    num_epochs: float | None = _option(None, "passes over the training data (None: max_steps decides)")
    stop_after_steps: int | None = _option(
        None,
        "end training after this many steps while the learning-rate schedule still runs to max_steps, so the run"
        " repeats the start of the longer one (None: train every step)",
    )
    batch_size: int = _option(8, "examples in one forward and backward pass (the micro-batch)")
    grad_accum: int = _option(1, "micro-batches whose gradients add up before one optimizer step")
    warmup_steps: int = _option(5, "steps over which the learning rate climbs from 0 to its peak")
    lr_scheduler: str = _option("cosine", "how the learning rate falls from its peak to the last step")
    weight_decay: float = _option(0.0, "AdamW's pull of each trained weight towards 0 (0: none)")
    eval_steps: int = _option(25, "steps between two validation losses (and checkpoints)")
    eval_batch_size: int = _option(16, "examples per batch when scoring validation")
    max_length: int = _option(256, "tokens per example; longer examples are cut")
    gradient_checkpointing: bool = _option(
        False, "recompute activations in the backward pass: less memory, more compute"
    )
    seed: int = _option(0, "seeds the adapters' initialisation and the data order: a rerun repeats")
    data_order: str = _option(
        "length-grouped", "how training batches are drawn (a key of DATA_ORDERS; length-grouped: little padding)"
    )
    save_checkpoints: bool = _option(
        True, "a checkpoint at each evaluation: the run ends on the lowest validation loss and can resume"
    )
    early_stopping_patience: int | None = _option(
        None, "stop after this many evaluations without a lower validation loss (None: never)"
    )
    # Only the answer tokens that spell a closed-label value (the "billing" of "category":"billing") get the weight;
    # every other answer token weighs 1, and 1.0 trains exactly as with no weights. The logged training loss is then
    # the weighted one; the validation loss stays unweighted, comparable across weights.
    label_token_weight: float = _option(
        1.0, "loss weight of the answer tokens that spell a label value (1.0: plain loss)"
    )
    report_to: str = _option(
        "none", "also log losses to a local tracker (tensorboard: event files in the run folder; none: off)"
    )

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
        elif (self.max_steps is not None and self.max_steps < 1) or (
            self.num_epochs is not None and self.num_epochs <= 0
        ):
            problems.append(f"max_steps must be >= 1 and num_epochs > 0, got {self.max_steps} and {self.num_epochs}")
        if self.stop_after_steps is not None and not (
            self.max_steps is not None and 1 <= self.stop_after_steps <= self.max_steps
        ):
            problems.append(
                f"stop_after_steps must be between 1 and max_steps ({self.max_steps}), got {self.stop_after_steps}"
            )
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

    Every field of ``TrainConfig`` gets a row with its help text, plus the derived LoRA scale alpha/r, the effective
    batch, the training examples and the epochs. Figures are this config's own; nothing is measured here.
    """
    lora = config.method != "full"
    effective = config.batch_size * config.grad_accum
    steps = training_steps(config, train_examples)
    derived = {  # shown after the field named
        "lora_alpha": [
            (
                "LoRA scale (alpha / r)",
                config.lora_alpha / config.lora_r,
                "how strongly the adapters' update adds to the frozen weights",
            )
        ],
        "grad_accum": [
            ("effective batch", effective, "batch_size x grad_accum: examples per optimizer step"),
            ("training examples", train_examples, "the train split the run reads"),
            (
                "epochs",
                f"{training_epochs(config, train_examples):.2f}",
                f"{steps} steps x {effective} examples / {train_examples} examples: passes over the training data",
            ),
        ],
    }
    rows = []
    for spec in fields(TrainConfig):
        explanation = spec.metadata["help"]
        if spec.metadata["lora"] and not lora:
            explanation = "not used: a full fine-tune has no adapters"
        elif spec.name == "method":
            explanation = METHOD_HELP.get(config.method, explanation)
        elif spec.name == "target_modules":
            explanation = f"the layers that get adapters: {', '.join(TARGET_MODULES.get(config.target_modules, ()))}"
        entries = [(spec.name, getattr(config, spec.name), explanation)] + derived.get(spec.name, [])
        for setting, value, text in entries:
            if not lora and setting.startswith("LoRA"):
                text = "not used: a full fine-tune has no adapters"
            shown = f"{value:g}" if isinstance(value, float) else str(value)  # 2e-4 stays 2e-4, not 0.000
            rows.append({"setting": setting, "value": shown, "what it does": text})
    return rows
