"""A GPU plan: the model, method, batch and checkpointing that fit the GPU a notebook finds.

``plan_gpu`` searches the candidates largest first and, for each, LoRA before QLoRA, no gradient checkpointing
before checkpointing, the largest micro-batch first (gradient accumulation keeps the config's effective batch).
The first configuration whose ``ftlib.engine.memory.estimate_memory`` peak fits under ``SAFETY_FRACTION`` of the card's
memory wins. Every figure here is an estimate from the models' shapes; none was measured on a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ftlib.core.config import TrainConfig
from ftlib.core.presets import METHODS
from ftlib.engine.memory import GB, MemoryEstimate, ModelShape, estimate_memory, model_config_for

# The estimate counts what PyTorch allocates (``torch.cuda.max_memory_allocated``). Three things come on top, so
# a plan may use only 85% of the card: the CUDA context and cuBLAS workspaces live outside PyTorch's allocator
# (a fixed cost, so the largest share of a small card like the T4); the caching allocator reserves whole segments
# and cannot always reuse split blocks (fragmentation: reserved exceeds allocated); and the estimator's GPU terms
# were checked on CPU, not measured on a GPU. 85% is a margin chosen for these reasons, not a measurement:
# it leaves 2.4 GB of a T4's 15.8 GB.
SAFETY_FRACTION = 0.85
# Apache-2.0 instruct models of one family (Qwen2.5), largest first. One family means one tokenizer: the splits
# lesson 02 writes for one of them serve the others, whichever model a lesson's plan picks.
PLAN_CANDIDATES = ("qwen2.5-7b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-0.5b-instruct")
NOTEBOOK_METHODS = ("lora", "qlora")  # LoRA first: 16-bit weights, no dequantization per step
LABELS = {"lora": "LoRA", "qlora": "QLoRA"}
# Answer tokens per padded position the plan assumes, with every row padded to the config's max_length. The
# largest share of answer tokens in one row of either sample dataset (embedded tokenizer) is 0.475 (listings),
# so a row of max_length tokens with at most that share bounds the answer tokens of every real row from above.
PLAN_ANSWER_FRACTION = 0.5
GIB = 2**30

# What torch.cuda.get_device_properties(0).total_memory reports on each class, as training logs print it
# (Unsloth's "Max memory", total_memory / 2**30): a card reports less than its nominal size. No report of an
# H100 80GB was at hand: it is given the A100 80GB's figure, the same nominal memory.
GPU_CLASSES: dict[str, tuple[str, float, bool]] = {  # label -> (device name, GiB reported, bf16)
    "T4 16 GB": ("Tesla T4", 14.748, False),
    "L4 24 GB": ("NVIDIA L4", 22.168, True),
    "A100 40 GB": ("NVIDIA A100-SXM4-40GB", 39.394, True),
    "A100 80 GB": ("NVIDIA A100 80GB PCIe", 79.151, True),
    "H100 80 GB": ("NVIDIA H100 80GB HBM3", 79.151, True),
}


# Memory of the GPUs the course's table compares, in bytes (the cards' nominal GiB).
GPUS: dict[str, int] = {
    "T4 16 GB": 16 * 2**30,
    "L4 24 GB": 24 * 2**30,
    "A100 40 GB": 40 * 2**30,
    "A100 80 GB": 80 * 2**30,
    "H100 80 GB": 80 * 2**30,
}


GPU_TABLE_CANDIDATES = (
    "smollm2-135m-instruct",
    "smollm2-360m-instruct",
    "smollm2-1.7b-instruct",
    "qwen2.5-0.5b-instruct",
    "qwen2.5-1.5b-instruct",
    "qwen2.5-7b-instruct",
    "mistral-7b-instruct-v0.3",
    "llama-3.1-8b-instruct",
)


class PlanDoesNotFit(ValueError):
    """A model and method that cannot fit this GPU even at micro-batch 1 with gradient checkpointing."""


@dataclass(frozen=True)
class GpuInfo:
    """The GPU a plan is made for: what ``torch.cuda`` reports about it."""

    name: str
    total_bytes: int
    bf16: bool

    @property
    def dtype(self) -> str:
        """The compute dtype ``ftlib.core.runtime.pick_device`` will use: bf16 where supported, else fp16 (T4)."""
        return "bf16" if self.bf16 else "fp16"

    @property
    def budget_bytes(self) -> int:
        """What a plan's estimated peak may use: ``SAFETY_FRACTION`` of the card."""
        return int(SAFETY_FRACTION * self.total_bytes)


def detect_gpu(index: int = 0) -> GpuInfo | None:
    """The CUDA device's name, total memory and bf16 support; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(index)
    return GpuInfo(
        torch.cuda.get_device_name(index), int(properties.total_memory), bool(torch.cuda.is_bf16_supported())
    )


def gpu_class(label: str) -> GpuInfo:
    """A ``GpuInfo`` for one of ``GPU_CLASSES`` (to show what ``auto`` picks on a card that is not here)."""
    name, gib, bf16 = GPU_CLASSES[label]
    return GpuInfo(name, int(gib * GIB), bf16)


@dataclass(frozen=True)
class GpuPlan:
    """The training run chosen for one GPU: the model, the planned ``TrainConfig``, and the estimate behind it.

    ``config`` is the caller's config with the plan's method, micro-batch (``batch_size``), ``grad_accum`` (micro-batch
    x accumulation = the caller's effective batch), ``gradient_checkpointing`` and validation batch.
    """

    gpu: GpuInfo
    base_model: str
    config: TrainConfig
    estimate: MemoryEstimate
    reason: str

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def dtype(self) -> str:
        return self.gpu.dtype

    def row(self) -> dict[str, Any]:
        """One table row: the card, the choices and the estimated peak against the budget (GB = 10^9 bytes)."""
        return {
            "GPU": self.gpu.name,
            "memory GB": round(self.gpu.total_bytes / GB, 1),
            "dtype": self.dtype,
            "model": self.base_model,
            "method": self.method,
            "batch x accumulation": f"{self.config.batch_size} x {self.config.grad_accum}",
            "checkpointing": "yes" if self.config.gradient_checkpointing else "no",
            "estimated peak GB": round(self.estimate.total / GB, 1),
            f"budget GB ({SAFETY_FRACTION:.0%})": round(self.gpu.budget_bytes / GB, 1),
        }


def _divisors_descending(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def _model_config(name: str):
    """A registry model's shape offline; otherwise a folder's or the hub's config."""
    return model_config_for(name, source="auto")


def _estimate(config, method: str, batch: int, checkpointing: bool, train: TrainConfig) -> MemoryEstimate:
    """The plan's (pessimistic) workload: every row padded to max_length, no shared prefix credited."""
    return estimate_memory(
        config,
        method,
        batch,
        train.max_length,
        device="cuda",
        lora_r=train.lora_r,
        gradient_checkpointing=checkpointing,
        answer_fraction=PLAN_ANSWER_FRACTION,
    )


def _first_fit(gpu: GpuInfo, config, method: str, train: TrainConfig) -> tuple[int, bool, MemoryEstimate] | None:
    """The micro-batch and checkpointing of the first configuration that fits, in the module's preference order.

    Without checkpointing first: a smaller micro-batch with more accumulation makes the same update at the same
    compute, while checkpointing recomputes every layer's forward pass (and turns off ftlib's shared prefix).
    """
    for checkpointing in (False, True):
        for batch in _divisors_descending(train.batch_size):
            estimate = _estimate(config, method, batch, checkpointing, train)
            if estimate.total <= gpu.budget_bytes:
                return batch, checkpointing, estimate
    return None


def _plan(gpu: GpuInfo, name: str, config, method: str, train: TrainConfig, why: str) -> GpuPlan | None:
    fit = _first_fit(gpu, config, method, train)
    if fit is None:
        return None
    batch, checkpointing, estimate = fit
    reason = (
        f"{name} with {LABELS[method]} in {gpu.dtype}: {why}. Estimated peak "
        f"{estimate.total / GB:.1f} GB within {gpu.budget_bytes / GB:.1f} GB ({SAFETY_FRACTION:.0%} of "
        f"{gpu.total_bytes / GB:.1f} GB); micro-batch {batch} x {train.batch_size // batch} accumulation "
        f"steps keeps the effective batch of {train.batch_size}"
        + (
            ", with gradient checkpointing (batch 1 without it does not fit)."
            if checkpointing
            else ", without gradient checkpointing."
        )
    )
    # A validation pass no larger than the training micro-batch keeps its logits within what the training
    # step's estimate already holds (it keeps no activations for a backward pass).
    planned = replace(
        train,
        method=method,
        batch_size=batch,
        grad_accum=train.batch_size // batch,
        gradient_checkpointing=checkpointing,
        eval_batch_size=min(train.eval_batch_size, batch),
    )
    return GpuPlan(gpu, name, planned, estimate, reason)


def _smallest_need(config, method: str, train: TrainConfig) -> MemoryEstimate:
    """The least this model and method can need: micro-batch 1 with gradient checkpointing."""
    return _estimate(config, method, 1, True, train)


def plan_gpu(gpu: GpuInfo, train: TrainConfig, method: str | None = None, base_model: str | None = None) -> GpuPlan:
    """The largest run that fits ``gpu``: model, method, micro-batch, accumulation and checkpointing.

    Args:
        gpu: from ``detect_gpu`` (or ``gpu_class`` for a card that is not here).
        train: the run asked for: its ``batch_size`` is the effective batch the plan keeps (split into micro-batch x
            accumulation); ``max_length``, ``lora_r`` and ``eval_batch_size`` shape the estimate.
        method: "lora" or "qlora" to fix it (the user's or the lesson's choice); None lets the plan choose,
            LoRA where it fits.
        base_model: a model to keep (the user's choice); None picks the largest of ``PLAN_CANDIDATES`` that fits.

    Raises:
        PlanDoesNotFit: the fixed choices cannot fit; the message names what would.
        ValueError: an unknown method.
    """
    if method is not None and method not in NOTEBOOK_METHODS:
        raise ValueError(f"method must be one of {', '.join(NOTEBOOK_METHODS)} or None, not {method!r}")
    methods = (method,) if method else NOTEBOOK_METHODS
    names = (base_model,) if base_model else PLAN_CANDIDATES
    configs = {name: _model_config(name) for name in dict.fromkeys(names + PLAN_CANDIDATES)}
    for name in names:
        for candidate_method in methods:
            if base_model:
                why = "the model you chose"
            elif name == PLAN_CANDIDATES[0]:
                why = "the largest candidate"
            else:
                bigger = ", ".join(PLAN_CANDIDATES[: PLAN_CANDIDATES.index(name)])
                why = f"the largest candidate that fits with {' or '.join(LABELS[m] for m in methods)} ({bigger}: no)"
            if method is None and candidate_method == "qlora":
                why += "; LoRA (16-bit weights) does not fit, QLoRA (NF4 weights) does"
            plan = _plan(gpu, name, configs[name], candidate_method, train, why)
            if plan is not None:
                return plan
    raise PlanDoesNotFit(_does_not_fit_message(gpu, names, methods, configs, train))


def _does_not_fit_message(gpu: GpuInfo, names, methods, configs, train: TrainConfig) -> str:
    """Why the fixed choice cannot fit, and the alternatives that would (each with its estimate)."""
    needs = "; ".join(
        f"{name} with {m} needs at least {_smallest_need(configs[name], m, train).total / GB:.1f} GB"
        for name in names
        for m in methods
    )
    alternatives = []
    for name in dict.fromkeys(names + PLAN_CANDIDATES):
        for m in NOTEBOOK_METHODS:
            if (name in names and m in methods) or any(a.startswith(f"base_model='{name}'") for a in alternatives):
                continue
            fit = _first_fit(gpu, configs[name], m, train)
            if fit is not None:
                alternatives.append(f"base_model='{name}', method='{m}' (estimated {fit[2].total / GB:.1f} GB)")
    fits = "; ".join(alternatives) if alternatives else "nothing in the plan's candidates: use profile='cpu'"
    return (
        f"This run cannot fit {gpu.name}: {needs} (estimated, micro-batch 1 with gradient checkpointing at "
        f"{train.max_length} tokens), and a plan may use {gpu.budget_bytes / GB:.1f} GB ({SAFETY_FRACTION:.0%} "
        f"of {gpu.total_bytes / GB:.1f} GB). What would fit: {fits}."
    )


def plan_table(
    train: TrainConfig,
    methods: tuple[str | None, ...] = (None, "lora", "qlora"),
    labels: tuple[str, ...] = tuple(GPU_CLASSES),
) -> list[dict]:
    """What ``auto`` picks on each GPU class for each method (None: the plan's choice), as table rows.

    Estimates from the models' shapes with ``train``'s workload (lesson 01 passes the ``gpu`` profile's config);
    nothing is measured.
    """
    return [
        {"GPU class": label, "method asked": LABELS.get(method, "plan's choice")}
        | plan_gpu(gpu_class(label), train, method).row()
        for label in labels
        for method in methods
    ]


def gpu_label(gpu: GpuInfo) -> str:
    """The column name of this machine's GPU in lesson 01's memory table."""
    return f"this GPU: {gpu.name}"


def table_gpus(gpu: GpuInfo | None) -> dict[str, int]:
    """Lesson 01's memory-table columns: the course's GPU classes, plus this machine's GPU when there is one."""
    return dict(GPUS) | ({gpu_label(gpu): gpu.total_bytes} if gpu is not None else {})


def gpu_memory_table(
    candidates: tuple[str, ...] | list = GPU_TABLE_CANDIDATES,
    gpus: Mapping[str, int] | None = None,
    methods: tuple[str, ...] = METHODS,
    batch: int = 1,
    seq_len: int = 2048,
    gradient_checkpointing: bool = True,
    fit_fraction: float = 0.9,
    **options: Any,
) -> list[dict[str, Any]]:
    """Estimated GPU training memory of each candidate and method, and which GPUs it fits on.

    Estimates use ``device="cuda"`` (bf16 compute), so they count what PyTorch allocates; the CUDA context and
    the allocator's fragmentation come on top, hence ``fit_fraction``.

    Args:
        candidates: registry names, folders, or ``(label, config)`` pairs.
        gpus: name -> memory in bytes; ``GPUS`` by default.
        methods: which of "full", "lora", "qlora" to estimate.
        batch, seq_len, gradient_checkpointing: the workload each row assumes.
        fit_fraction: a model "fits" when its estimate is at most this share of the card's memory: a safety
            margin chosen for the table, not a measurement.
        **options: passed on to ``estimate_memory`` (e.g. ``lora_r``, ``answer_fraction``).

    Returns:
        One row per candidate and method: model, parameters, method, the estimate's parts and total in GB,
        and a "yes"/"no" column per GPU.
    """
    gpus = GPUS if gpus is None else gpus
    rows = []
    for candidate in candidates:
        label, config = candidate if isinstance(candidate, tuple) else (candidate, model_config_for(candidate))
        shape = ModelShape.from_config(config)
        for method in methods:
            estimate = estimate_memory(
                shape, method, batch, seq_len, device="cuda", gradient_checkpointing=gradient_checkpointing, **options
            )
            row = {"model": label, "params (B)": round(shape.parameters / 1e9, 3)}
            row |= {
                k: v
                for k, v in estimate.as_row(2).items()
                if k not in ("device", "baseline GB", "mapped_checkpoint GB", "allocator GB")
            }
            row |= {gpu: "yes" if estimate.total <= fit_fraction * memory else "no" for gpu, memory in gpus.items()}
            rows.append(row)
    return rows
