"""Training-memory estimates for full fine-tuning, LoRA and QLoRA.

``estimate_memory`` adds up what a training step keeps alive in ftlib's training loop (``ftlib.engine.train``):
the weights, the LoRA adapters, AdamW's state, the gradients, the activations autograd saves for the
backward pass, bitsandbytes' dequantization workspace and the runtime itself. Each term follows the code
path ftlib really runs (answer-only logits, the shared prompt prefix run once per batch, peft's fp32
adapters, ``prepare_model_for_kbit_training``). The CPU terms were checked against the tensors autograd
saves and against the peak resident memory of real ``ftlib.engine.train.train`` runs (``tests/test_memory.py``, with
the measuring harness in ``tests/memory_harness.py``). This module imports nothing from training.
The GPU activation terms were checked against the tensors autograd saves when the GPU code path (bf16
weights under bf16 autocast) runs on CPU: within 1% for full fine-tuning and LoRA, 5% for QLoRA. They
were not measured on a GPU, whose attention and bitsandbytes kernels may keep slightly different buffers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftlib.core.presets import METHODS, TARGET_MODULES

GB = 10**9

# The CPU runtime's own resident memory, measured on Linux x86_64 (Python 3.11, torch 2.13.0+cpu,
# transformers 5.23.0, peft 0.21.2; after a change, re-measure the first with
# `python -c "import resource, ftlib.engine.train; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"`, in KiB):
# - a process that has imported ftlib.engine.train (torch, transformers' Trainer, peft): 429.2 MiB peak RSS;
# - what train() adds before any weight is touched (the SmolLM2 tokenizer, the model's modules, peft, Trainer):
#   47 MiB, the RSS at Trainer's start minus the above, in runs of 20M- and 50M-parameter models whose
#   weights (memory-mapped from the checkpoint) were not yet resident.
CPU_IMPORT_RSS_BYTES = int(429.2 * 2**20)
CPU_SETUP_RSS_BYTES = 47 * 2**20
CPU_RUNTIME_BASELINE_BYTES = CPU_IMPORT_RSS_BYTES + CPU_SETUP_RSS_BYTES
# glibc's malloc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold for reuse, so a CPU run's
# peak RSS exceeds its peak of live tensors by a share of what a step allocates for activations. Measured on 24
# ftlib.engine.train runs (random Llama models of hidden size 256 and 512, batch 4, 8 and 16, full/LoRA/QLoRA and LoRA
# with checkpointing): with MALLOC_MMAP_THRESHOLD_=65536, which hands freed blocks back at once, the estimate
# without this term was within -2% and +6% of every peak; with the default malloc, the least-squares share was
# 0.42 (single runs 0 to 0.9), and with 0.4 every estimate was within 17% of the measured peak. SmolLM2-135M
# (30 layers) at batch 8 kept more: 0.64 of a step's activations with LoRA, 0.8 with QLoRA.
CPU_ALLOCATOR_RETENTION = 0.4

DEVICES = ("cpu", "cuda")
OPTIMIZERS = ("adamw_torch", "paged_adamw_8bit")

# bitsandbytes NF4 with double quantization: two 4-bit codes per byte, one uint8 absmax per block of 64 weights,
# and one fp32 absmax per block of 256 of those (bnb's default block sizes).
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
# bitsandbytes' 8-bit AdamW: two uint8 moments with one fp32 absmax per block of 256 values; tensors smaller than
# 4096 elements keep 32-bit moments (its `min_8bit_size`).
ADAMW_8BIT_BYTES_PER_PARAM = 2 * (1 + 4 / 256)
ADAMW_8BIT_MIN_SIZE = 4096
# Answer-position logits: on the way back, cross-entropy's saved log-softmax, the gradient arriving from the loss
# and the gradient it returns are alive together, each (answer tokens x vocabulary) in fp32 (12 bytes a logit).
LOGIT_BYTES = 3 * 4


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Llama-style decoder (Llama, Mistral, Qwen2, SmolLM2) that memory depends on."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool
    head_dim: int
    qkv_bias: bool = False

    @classmethod
    def from_config(cls, model_config: Any) -> ModelShape:
        """Read a ``transformers`` config, a dict of its fields, or a ``ModelShape``.

        Raises:
            ValueError: a required field is missing.
        """
        if isinstance(model_config, ModelShape):
            return model_config
        values = dict(model_config) if isinstance(model_config, Mapping) else model_config.to_dict()
        required = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        missing = [name for name in required if values.get(name) is None]
        if missing:
            raise ValueError(f"model_config lacks {', '.join(missing)}")
        heads = int(values["num_attention_heads"])
        return cls(
            hidden_size=int(values["hidden_size"]),
            intermediate_size=int(values["intermediate_size"]),
            num_hidden_layers=int(values["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(values.get("num_key_value_heads") or heads),
            vocab_size=int(values["vocab_size"]),
            tie_word_embeddings=bool(values.get("tie_word_embeddings", False)),
            head_dim=int(values.get("head_dim") or int(values["hidden_size"]) // heads),
            # Qwen2 puts biases on q, k and v without a config field saying so.
            qkv_bias=bool(values.get("attention_bias", values.get("model_type") == "qwen2")),
        )

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """``(in_features, out_features)`` of each linear layer of one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def parameter_counts(self) -> dict[str, int]:
        """Parameters by kind: ``linear`` (what NF4 quantizes), ``embedding``, ``lm_head``, ``norm_and_bias``."""
        per_layer_linear = sum(n_in * n_out for n_in, n_out in self.linear_shapes().values())
        per_layer_bias = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        embedding = self.vocab_size * self.hidden_size
        return {
            "linear": self.num_hidden_layers * per_layer_linear,
            "embedding": embedding,
            "lm_head": 0 if self.tie_word_embeddings else embedding,
            "norm_and_bias": self.num_hidden_layers * (2 * self.hidden_size + per_layer_bias) + self.hidden_size,
        }

    @property
    def parameters(self) -> int:
        return sum(self.parameter_counts().values())

    def tensor_sizes(self) -> list[int]:
        """The size of every parameter tensor (embedding, untied output layer, linears, norms, biases)."""
        layer = [n_in * n_out for n_in, n_out in self.linear_shapes().values()] + [self.hidden_size] * 2
        if self.qkv_bias:
            layer += [self.q_dim, self.kv_dim, self.kv_dim]
        head = [self.vocab_size * self.hidden_size] * (1 if self.tie_word_embeddings else 2)
        return head + layer * self.num_hidden_layers + [self.hidden_size]

    def lora_parameter_sizes(self, lora_r: int, target_modules: str = "all-linear") -> list[int]:
        """The sizes of every LoRA matrix (A then B of each target module, layer by layer)."""
        targets = TARGET_MODULES[target_modules]
        per_layer = [
            size
            for name, (n_in, n_out) in self.linear_shapes().items()
            if name in targets
            for size in (lora_r * n_in, lora_r * n_out)
        ]
        return per_layer * self.num_hidden_layers


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak training memory, by component, in bytes.

    ``total`` is the peak: the sum of the ``COMPONENTS``. The components are those alive at the predicted peak,
    ``peak_phase``: for LoRA and QLoRA the start of the backward pass; for full fine-tuning either that moment
    (activations alive, only the output layer's gradient made yet) or the optimizer step (every gradient
    alive, the activations freed), whichever is larger. ``all_gradients`` is the size of every gradient.
    """

    method: str
    device: str
    batch: int
    seq_len: int
    weights: int  # the base model as held (NF4 layers + fp32 rest for QLoRA)
    adapters: int  # LoRA matrices, fp32
    optimizer: int  # AdamW's two moments of the trainable parameters
    gradients: int  # gradients alive at the peak
    activations: int  # what autograd saves for backward, plus the answer-logit buffers, at the peak
    workspace: int  # QLoRA: one dequantized weight at a time; at an optimizer-step peak, AdamW's temporaries
    mapped_checkpoint: int  # CPU QLoRA: the checkpoint's pages of the quantized layers stay mapped (counted in RSS)
    allocator: int  # CPU: freed blocks malloc keeps (``CPU_ALLOCATOR_RETENTION`` of a step's activations)
    baseline: int  # the runtime (CPU: the RSS of the imported libraries; GPU: 0, CUDA's context is not allocated)
    all_gradients: int = 0
    peak_phase: str = "backward"

    COMPONENTS = (
        "weights",
        "adapters",
        "optimizer",
        "gradients",
        "activations",
        "workspace",
        "mapped_checkpoint",
        "allocator",
        "baseline",
    )

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in self.COMPONENTS)

    def gb(self, component: str = "total") -> float:
        """One component (or the total) in GB (10^9 bytes)."""
        return getattr(self, component) / GB

    def as_row(self, digits: int = 3) -> dict[str, Any]:
        """A table row: the settings, then every component and the total in GB."""
        row: dict[str, Any] = {
            "method": self.method,
            "device": self.device,
            "batch": self.batch,
            "seq_len": self.seq_len,
        }
        row |= {f"{name} GB": round(self.gb(name), digits) for name in self.COMPONENTS}
        row["total GB"] = round(self.gb(), digits)
        row["peak phase"] = self.peak_phase
        return row


def _layer_bytes_per_token(shape: ModelShape, method: str, device: str, lora_r: int, targets: tuple[str, ...]) -> int:
    """Bytes one decoder layer saves for backward per token, not counting keys, values and the attention mask.

    Counted from the tensors autograd keeps in ``transformers``' Llama layer: RMSNorm upcasts its input to
    fp32 and keeps it; SDPA keeps its inputs and output; SiLU and the gate product keep their inputs; a
    frozen linear keeps nothing, a trained one (or its LoRA) keeps its input. On CPU everything is fp32.
    On GPU (bf16 weights, Trainer's bf16 autocast) peft casts each LoRA module's input to the adapter's fp32
    and autocast casts it back, so each LoRA module keeps its own bf16 copy; for QLoRA,
    ``prepare_model_for_kbit_training`` makes the embeddings fp32, so the residual stream and the MLP run in
    fp32, and each 4-bit layer with an fp32 input also keeps the bf16 copy bitsandbytes multiplies.
    """
    h, i, q = shape.hidden_size, shape.intermediate_size, shape.q_dim
    inputs = {name: n_in for name, (n_in, _) in shape.linear_shapes().items()}
    lora = {name: inputs[name] for name in targets} if method != "full" else {}
    lora_hidden = len(lora) * lora_r
    norm_inputs = 2 * h * 4  # both RMSNorms' fp32 inputs (on CPU: the residual stream itself)
    if device == "cpu":
        trains = set(inputs) if method == "full" else set(lora)
        norm_outputs = h * 4 * (bool(trains & {"q_proj", "k_proj", "v_proj"}) + bool(trains & {"gate_proj", "up_proj"}))
        normalized = 2 * h * 4 if method == "full" else 0  # for the RMSNorm weights' gradients
        mlp = 3 * i * 4 + ("down_proj" in trains) * i * 4  # gate, SiLU, up; the product if down_proj trains
        # The o_proj input is a view of SDPA's output, which SDPA keeps anyway.
        return norm_inputs + norm_outputs + normalized + 2 * q * 4 + mlp + lora_hidden * 4
    attention = 2 * q * 2  # rotated queries and SDPA's output, bf16
    if method == "full":
        return norm_inputs + 2 * (2 * h * 2) + attention + 4 * i * 2
    if method == "lora":
        return norm_inputs + 2 * sum(lora.values()) + attention + 3 * i * 2 + lora_hidden * 2
    fp32_inputs = {name: n_in for name, n_in in inputs.items() if name != "o_proj"}  # o_proj gets SDPA's bf16
    lora_copies = 2 * sum(n_in for name, n_in in lora.items() if name in fp32_inputs)
    quantized_copies = 2 * sum(fp32_inputs.values())
    return norm_inputs + lora_copies + quantized_copies + attention + 3 * i * 4 + lora_hidden * 2


def _checkpointed_layer_bytes_per_token(shape: ModelShape, method: str, device: str) -> int:
    """Bytes per token of the layer input that activation checkpointing keeps for each layer."""
    return shape.hidden_size * (4 if device == "cpu" or method == "qlora" else 2)


def _check_settings(
    method: str,
    batch: int,
    seq_len: int,
    device: str,
    lora_r: int,
    target_modules: str,
    answer_fraction: float,
    shared_prefix: int,
    optimizer: str | None,
) -> str:
    """Refuse settings ``estimate_memory`` cannot describe; returns the optimizer, ftlib's choice when None.

    Raises:
        ValueError: an unknown method, device, target preset or optimizer, or a size out of range.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
    if target_modules not in TARGET_MODULES:
        raise ValueError(f"target_modules must be one of {list(TARGET_MODULES)}, not {target_modules!r}")
    if batch < 1 or seq_len < 1 or lora_r < 1:
        raise ValueError(f"batch, seq_len and lora_r must be >= 1, got {batch}, {seq_len}, {lora_r}")
    if not 0 < answer_fraction <= 1:
        raise ValueError(f"answer_fraction must be in (0, 1], got {answer_fraction}")
    if not 0 <= shared_prefix < seq_len:
        raise ValueError(f"shared_prefix must be in [0, seq_len), got {shared_prefix}")
    optimizer = optimizer or ("paged_adamw_8bit" if device == "cuda" and method == "qlora" else "adamw_torch")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    return optimizer


def _weight_bytes(shape: ModelShape, method: str, compute_bytes: int) -> int:
    """The base model as held: the compute dtype, or for QLoRA NF4 linears and everything else in fp32."""
    if method == "qlora":
        # prepare_model_for_kbit_training casts every parameter that is not 4-bit to fp32.
        linear = shape.parameter_counts()["linear"]
        return round(linear * NF4_BYTES_PER_PARAM) + 4 * (shape.parameters - linear)
    return shape.parameters * compute_bytes


@dataclass(frozen=True)
class _Trainable:
    """The tensors a run trains, and the bytes of one of their gradient elements."""

    sizes: list[int]  # elements of each trainable tensor: every parameter (full) or every LoRA matrix
    gradient_bytes: int
    adapters: int  # bytes of the LoRA matrices (0 for full fine-tuning, whose weights are counted as weights)

    @property
    def all_gradients(self) -> int:
        return self.gradient_bytes * sum(self.sizes)


def _trainable(shape: ModelShape, method: str, compute_bytes: int, lora_r: int, target_modules: str) -> _Trainable:
    """What trains: every parameter in the model's dtype (full), or fp32 LoRA matrices with fp32 gradients."""
    if method == "full":
        return _Trainable(shape.tensor_sizes(), compute_bytes, 0)  # fp32 on CPU, bf16 on GPU
    lora_sizes = shape.lora_parameter_sizes(lora_r, target_modules)
    return _Trainable(lora_sizes, 4, 4 * sum(lora_sizes))  # peft keeps adapter weights in fp32 (autocast_adapter_dtype)


def _optimizer_bytes(trainable: _Trainable, optimizer: str) -> int:
    """AdamW's two moments per trainable element: 8-bit blocks in bitsandbytes, else the parameter's dtype."""
    if optimizer == "paged_adamw_8bit":
        return round(
            sum(ADAMW_8BIT_BYTES_PER_PARAM * n if n >= ADAMW_8BIT_MIN_SIZE else 8 * n for n in trainable.sizes)
        )
    return 2 * trainable.all_gradients  # torch's AdamW moments take the param dtype


@dataclass(frozen=True)
class _Activations:
    """Activation bytes: all a step's forward keeps, and what is alive when the backward pass starts."""

    per_step: int  # what the CPU allocator term is a share of, with or without checkpointing
    at_backward: int


def _activations(
    shape: ModelShape,
    method: str,
    device: str,
    compute_bytes: int,
    batch: int,
    seq_len: int,
    lora_r: int,
    target_modules: str,
    gradient_checkpointing: bool,
    answer_fraction: float,
    shared_prefix: int,
    padded: bool,
) -> _Activations:
    """What autograd saves for backward: per token and layer, plus keys/values over the full length, the
    attention mask, the final norm and the answer-position logits; with checkpointing, each layer's input."""
    prefix = 0 if gradient_checkpointing else shared_prefix
    own_tokens = batch * (seq_len - prefix) + prefix  # the shared prefix runs once
    all_tokens = batch * seq_len
    kv_width = shape.q_dim if padded else shape.kv_dim  # with a mask, SDPA gets keys and values repeated per head
    kv_per_layer = 2 * kv_width * compute_bytes * all_tokens + 2 * shape.kv_dim * compute_bytes * prefix
    mask_per_layer = batch * (seq_len - prefix) * seq_len * compute_bytes if padded else 0
    targets = TARGET_MODULES[target_modules]
    layer_saved = _layer_bytes_per_token(shape, method, device, lora_r, targets) * own_tokens
    one_layer = layer_saved + kv_per_layer + mask_per_layer
    # The final norm keeps its input, as the first layer's does only when the embeddings train (full fine-tuning):
    # for adapters the two cancel. Full fine-tuning also keeps the normalized input for the norm's gradient.
    final_norm = shape.hidden_size * (4 + compute_bytes) * own_tokens if method == "full" else 0
    logits = round(LOGIT_BYTES * shape.vocab_size * answer_fraction * all_tokens)
    per_step = shape.num_hidden_layers * one_layer + final_norm + logits  # all a step's forward keeps
    if not gradient_checkpointing:
        return _Activations(per_step, per_step)
    checkpoints = _checkpointed_layer_bytes_per_token(shape, method, device) * all_tokens * shape.num_hidden_layers
    # The logit buffers are freed before the first layer is recomputed.
    return _Activations(per_step, checkpoints + final_norm + max(logits, one_layer))


@dataclass(frozen=True)
class _Peak:
    """The components that depend on when the peak falls: the start of backward or the optimizer step."""

    phase: str
    gradients: int
    workspace: int
    activations: int


def _peak(
    shape: ModelShape,
    method: str,
    device: str,
    compute_bytes: int,
    optimizer: str,
    trainable: _Trainable,
    activations: int,
) -> _Peak:
    """Whichever is larger: the start of the backward pass or the optimizer step.

    The backward pass starts with every activation alive; full fine-tuning then makes the output layer's
    gradient first and the others as activations are freed. The optimizer step holds every gradient and
    AdamW's temporaries: torch's CPU AdamW works tensor by tensor (two temporaries of the largest), its GPU
    AdamW on all tensors at once (one temporary of them all); bitsandbytes' 8-bit AdamW updates in place.
    """
    all_gradients = trainable.all_gradients
    output_gradient = (
        trainable.gradient_bytes * shape.vocab_size * shape.hidden_size if method == "full" else all_gradients
    )
    if optimizer == "paged_adamw_8bit":
        step_temporaries = 0
    elif device == "cpu":
        step_temporaries = 2 * trainable.gradient_bytes * max(trainable.sizes)
    else:
        step_temporaries = all_gradients
    largest_quantized = max(n_in * n_out for n_in, n_out in shape.linear_shapes().values())
    dequantized = largest_quantized * compute_bytes if method == "qlora" else 0  # bitsandbytes, one at a time
    if activations + output_gradient + dequantized >= all_gradients + step_temporaries:
        return _Peak("backward", output_gradient, dequantized, activations)
    return _Peak("optimizer step", all_gradients, step_temporaries, 0)


def _allocator_bytes(device: str, step_activations: int) -> int:
    """CPU: the freed blocks glibc's malloc keeps, a share of what a step allocates (``CPU_ALLOCATOR_RETENTION``)."""
    return round(CPU_ALLOCATOR_RETENTION * step_activations) if device == "cpu" else 0


def _mapped_checkpoint_bytes(
    shape: ModelShape, method: str, device: str, compute_bytes: int, checkpoint_dtype_bytes: int
) -> int:
    """CPU QLoRA from a checkpoint in the compute dtype: the quantized layers' file pages stay mapped (in RSS)."""
    if device == "cpu" and method == "qlora" and checkpoint_dtype_bytes == compute_bytes:
        return shape.parameter_counts()["linear"] * checkpoint_dtype_bytes
    return 0


def _baseline_bytes(device: str, baseline_bytes: int | None) -> int:
    """The runtime's own memory: the CPU process's libraries; 0 on GPU, where CUDA's context is not allocated."""
    if baseline_bytes is not None:
        return baseline_bytes
    return CPU_RUNTIME_BASELINE_BYTES if device == "cpu" else 0


def estimate_memory(
    model_config: Any,
    method: str,
    batch: int,
    seq_len: int,
    *,
    device: str = "cpu",
    lora_r: int = 16,
    target_modules: str = "all-linear",
    gradient_checkpointing: bool = False,
    answer_fraction: float = 0.3,
    shared_prefix: int = 0,
    padded: bool | None = None,
    optimizer: str | None = None,
    checkpoint_dtype_bytes: int = 4,
    baseline_bytes: int | None = None,
) -> MemoryEstimate:
    """Estimate the peak memory of one ftlib training run.

    Args:
        model_config: a ``transformers`` config (e.g. ``LlamaConfig``), a dict with its size fields, a
            ``ModelShape``, or a registry name / local folder (read with ``model_config_for``).
        method: "full", "lora" or "qlora".
        batch: rows per optimizer micro-batch (``TrainConfig.batch_size``).
        seq_len: padded length of the batch, in tokens (the longest row).
        device: "cpu" (fp32 compute, RSS) or "cuda" (bf16 compute, ``torch.cuda.max_memory_allocated``).
        lora_r: LoRA rank.
        target_modules: "all-linear" (q, k, v, o, gate, up, down) or "attention".
        gradient_checkpointing: recompute each layer in the backward pass (ftlib then runs the whole prompt
            for every row: no shared prefix).
        answer_fraction: share of the ``batch * seq_len`` positions that are answer tokens; ftlib computes
            logits only there.
        shared_prefix: leading tokens every row of a batch shares (system prompt and turn header); ftlib runs
            them once per batch.
        padded: whether rows of a batch differ in length, so attention gets a padding mask and grouped keys
            and values are repeated per head; by default, whenever ``batch > 1``.
        optimizer: "adamw_torch" or "paged_adamw_8bit"; by default ftlib's choice (8-bit for QLoRA on GPU).
        checkpoint_dtype_bytes: bytes per parameter of the safetensors file (ftlib's embedded and test models
            are fp32, hub checkpoints mostly bf16). On CPU a file in the compute dtype is used in place, and
            QLoRA then keeps the pages of the layers it quantized mapped.
        baseline_bytes: the runtime's own memory; ``CPU_RUNTIME_BASELINE_BYTES`` on CPU, 0 on GPU by default.

    Returns:
        A ``MemoryEstimate`` in bytes.
    """
    optimizer = _check_settings(
        method, batch, seq_len, device, lora_r, target_modules, answer_fraction, shared_prefix, optimizer
    )
    if isinstance(model_config, (str, Path)):
        model_config = model_config_for(str(model_config))
    shape = ModelShape.from_config(model_config)
    compute_bytes = 4 if device == "cpu" else 2
    padded = batch > 1 if padded is None else padded
    trainable = _trainable(shape, method, compute_bytes, lora_r, target_modules)
    step = (batch, seq_len, lora_r, target_modules, gradient_checkpointing, answer_fraction, shared_prefix, padded)
    activations = _activations(shape, method, device, compute_bytes, *step)
    peak = _peak(shape, method, device, compute_bytes, optimizer, trainable, activations.at_backward)
    return MemoryEstimate(
        method=method,
        device=device,
        batch=batch,
        seq_len=seq_len,
        weights=_weight_bytes(shape, method, compute_bytes),
        adapters=trainable.adapters,
        optimizer=_optimizer_bytes(trainable, optimizer),
        gradients=peak.gradients,
        activations=peak.activations,
        workspace=peak.workspace,
        mapped_checkpoint=_mapped_checkpoint_bytes(shape, method, device, compute_bytes, checkpoint_dtype_bytes),
        allocator=_allocator_bytes(device, activations.per_step),
        baseline=_baseline_bytes(device, baseline_bytes),
        all_gradients=trainable.all_gradients,
        peak_phase=peak.phase,
    )


def model_config_for(name_or_path: str, source: str | None = None):
    """A model's ``transformers`` config, read offline where it can be.

    A folder's ``config.json``, else a registry model's stored shape (``ftlib.engine.models.ARCHITECTURES``), with no
    download. With ``source`` ("auto", "hub" or "embedded", as ``ftlib.engine.models.resolve_model_source`` takes it),
    a name with neither (a hub id, or a registry model without a stored shape) is then read from that source,
    which may download its config; without one, such a name raises.

    Raises:
        KeyError: ``source`` is None and the name is neither a folder with a config.json nor a registry model
            with an architecture.
    """
    from transformers import AutoConfig

    from ftlib.engine import models

    folder = Path(name_or_path).expanduser()
    if (folder / "config.json").is_file():
        return AutoConfig.from_pretrained(folder)
    if name_or_path == "tiny-random-llama":
        return models.tiny_random_llama_config(len(models.tiny_tokenizer()))
    if name_or_path not in models.ARCHITECTURES:
        if source is not None:
            return AutoConfig.from_pretrained(models.resolve_model_source(name_or_path, source))
        raise KeyError(
            f"No architecture known for {name_or_path!r}. Known: {', '.join(models.ARCHITECTURES)}; "
            "or pass a folder holding a config.json."
        )
    values = dict(models.ARCHITECTURES[name_or_path])
    return AutoConfig.for_model(values.pop("model_type"), **values)


@dataclass(frozen=True)
class Workload:
    """The batch shape an estimate needs, read from real records."""

    seq_len: int  # the longest example, tokens (a batch's padded length is at most this)
    answer_fraction: float  # answer positions per padded position, averaged over examples
    shared_prefix: int  # leading tokens every example shares (each batch shares at least these)


def workload_from_records(records: list[dict], tokenizer, task=None, max_length: int = 256) -> Workload:
    """Measure ``seq_len``, ``answer_fraction`` and ``shared_prefix`` of records as ftlib tokenizes them."""
    from ftlib.data.batches import IGNORE_INDEX, common_prefix_length, tokenize_example
    from ftlib.data.records import to_messages

    examples = [tokenize_example(tokenizer, to_messages(record, task), max_length) for record in records]
    seq_len = max(len(example.input_ids) for example in examples)
    answers = sum(sum(label != IGNORE_INDEX for label in example.labels) for example in examples)
    if not answers:
        first = tokenize_example(tokenizer, to_messages(records[0], task), 10**9)
        prompt = sum(label == IGNORE_INDEX for label in first.labels)
        raise ValueError(
            f"max_length {max_length} cuts every example before its answer (the first example's prompt alone is "
            f"{prompt} tokens, {len(first.input_ids)} with its answer): raise --max-length"
        )
    prefix = common_prefix_length([example.input_ids for example in examples]) if len(examples) > 1 else 0
    return Workload(seq_len, answers / (len(examples) * seq_len), prefix)
