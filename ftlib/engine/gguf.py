"""The files llama.cpp and Ollama read: a Llama model written as GGUF (weights, byte-level BPE tokenizer and chat
template under llama.cpp's names), read back with ``transformers``, and the Ollama ``Modelfile`` beside it.

``ftlib.engine.export.ship`` writes both and checks each hand-over; this module only writes and reads."""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ftlib.core.fileio import atomic_path

GGUF_DTYPES = ("f32", "f16")


MODELFILE_NAME = "Modelfile"


SUPPORTED_ARCHITECTURES = ("llama",)


class UnsupportedModel(ValueError):
    """A model or tokenizer this writer cannot express in GGUF; the message names what and why."""


def check_architecture(config) -> None:
    """Refuse, by name, a model this writer cannot put into GGUF faithfully.

    Raises:
        UnsupportedModel: not Llama, or a Llama variant with biases, another activation or scaled RoPE.
    """
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModel(
            f"cannot export architecture {model_type!r} to GGUF: only {', '.join(SUPPORTED_ARCHITECTURES)} "
            "(e.g. SmolLM2, Llama 3) is supported; convert it with llama.cpp's convert_hf_to_gguf.py instead"
        )
    problems = []
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        problems.append("bias terms (attention_bias/mlp_bias)")
    if getattr(config, "hidden_act", "silu") != "silu":
        problems.append(f"activation {config.hidden_act!r} (llama.cpp's llama uses silu)")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        problems.append(f"RoPE scaling {rope.get('rope_type')!r} (transformers' GGUF reader ignores it for llama)")
    if problems:
        raise UnsupportedModel(f"cannot export this llama model to GGUF faithfully: {'; '.join(problems)}")


def llama_cpp_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a Q or K projection the way llama.cpp's converter does (``convert_hf_to_gguf``).

    transformers' Llama rotates the two halves of each head's dimensions; llama.cpp rotates neighbouring
    pairs. ``transformers``' GGUF reader undoes this with ``LlamaTensorProcessor._reverse_permute_weights``.
    """
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _pre_tokenizer_name(backend: dict) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for a byte-level BPE's pre-tokenizer, or UnsupportedModel."""
    pre = backend.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # the GPT-2 split regex, then bytes (llama.cpp refuses "gpt2": unknown pre-tokenizer)
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if [step.get("type") for step in steps] == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"  # SmolLM2's hub tokenizer: digits one by one, then the GPT-2 split
    raise UnsupportedModel(
        f"cannot describe this tokenizer's pre-tokenizer in GGUF: {json.dumps(pre)[:200]} "
        "(supported: byte-level BPE with the GPT-2 split, optionally after single digits)"
    )


def tokenizer_metadata(tokenizer, vocab_size: int) -> dict:
    """The GGUF tokenizer fields of a byte-level BPE tokenizer: tokens, types, merges, special ids, template.

    Token types follow llama.cpp: special added tokens are CONTROL, other added tokens USER_DEFINED, the rest
    NORMAL; rows the model has beyond the tokenizer are ``[PAD<i>]``, UNUSED, as llama.cpp's converter names them.

    Raises:
        UnsupportedModel: not a byte-level BPE tokenizer with merges, or more tokens than the model has rows.
    """
    from gguf import TokenType

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    model = backend["model"]
    if model.get("type") != "BPE":
        raise UnsupportedModel(f"cannot write tokenizer model {model.get('type')!r} to GGUF: only BPE is supported")
    pre = _pre_tokenizer_name(backend)
    vocab = tokenizer.get_vocab()  # base vocabulary and added tokens, token -> id
    if len(vocab) > vocab_size or max(vocab.values()) >= vocab_size:
        raise UnsupportedModel(f"the tokenizer has {len(vocab)} tokens but the model only {vocab_size} rows")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [TokenType.UNUSED] * vocab_size
    for token, index in vocab.items():
        tokens[index], types[index] = token, TokenType.NORMAL
    for added in backend.get("added_tokens", []):
        types[added["id"]] = TokenType.CONTROL if added["special"] else TokenType.USER_DEFINED
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model.get("merges", [])]
    if not merges:  # gguf cannot write an empty array, and llama.cpp refuses a BPE file without merges
        raise UnsupportedModel("cannot write a BPE tokenizer without merges to GGUF (llama.cpp requires them)")
    # How the tokenizer itself treats a plain text: does it put BOS before it, EOS after it?
    plain, marked = (tokenizer("a", add_special_tokens=flag)["input_ids"] for flag in (False, True))
    special = {
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "unk": tokenizer.unk_token_id,
        "pad": tokenizer.pad_token_id,
    }
    return {
        "pre": pre,
        "tokens": tokens,
        "types": [int(t) for t in types],
        "merges": merges,
        "special": {key: value for key, value in special.items() if value is not None},
        "add_bos": len(marked) > len(plain) and marked[0] == tokenizer.bos_token_id,
        "add_eos": len(marked) > len(plain) and marked[-1] == tokenizer.eos_token_id,
        "chat_template": tokenizer.chat_template,
    }


def write_gguf(model, tokenizer, path: str | Path, dtype: str = "f32", name: str = "model") -> Path:
    """Write a Llama model and its tokenizer as one GGUF file, atomically.

    Tensor names are llama.cpp's (``token_embd``, ``blk.N.attn_q``, ...; from ``gguf.get_tensor_name_map``),
    Q and K rows are permuted as llama.cpp's converter does, norms stay F32 (as llama.cpp keeps them), and
    ``output.weight`` is left out when the embeddings are tied (readers then tie them again).

    Args:
        dtype: "f32" (exact copy of fp32 weights) or "f16" (half the size; logits move by a few hundredths).
        name: ``general.name``; never containing "mistral", which transformers' reader takes for Mistral.

    Raises:
        UnsupportedModel: not a Llama model (see ``check_architecture``) or not a byte-level BPE tokenizer.
    """
    import gguf

    if dtype not in GGUF_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(GGUF_DTYPES)}, not {dtype!r}")
    config = model.config
    check_architecture(config)
    meta = tokenizer_metadata(tokenizer, config.vocab_size)
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    rope = getattr(config, "rope_parameters", None) or {}
    rope_theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))

    path = Path(path)
    with atomic_path(path) as partial:  # a crash mid-write leaves no half GGUF behind
        writer = gguf.GGUFWriter(str(partial), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        writer.add_name(name.replace("mistral", "model"))
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_rope_dimension_count(head_dim)
        if rope_theta is not None:
            writer.add_rope_freq_base(float(rope_theta))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(config.vocab_size)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
        _add_tokenizer(writer, meta)

        for hf_name, tensor in model.state_dict().items():
            if tied and hf_name == "lm_head.weight":
                continue
            base, _, suffix = hf_name.rpartition(".")
            gguf_name = names.get_name(base)
            if gguf_name is None:
                raise UnsupportedModel(f"no GGUF name for tensor {hf_name!r}")
            array = tensor.detach().to(torch.float32).cpu().numpy()
            if gguf_name.endswith(".attn_q"):
                array = llama_cpp_permute(array, n_head)
            elif gguf_name.endswith(".attn_k"):
                array = llama_cpp_permute(array, n_kv)
            if dtype == "f16" and array.ndim > 1:
                array = array.astype(np.float16)
            writer.add_tensor(f"{gguf_name}.{suffix}", array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def _add_tokenizer(writer, meta: dict) -> None:
    """The tokenizer's keys of a GGUF file, from ``tokenizer_metadata``: vocabulary, merges, special tokens and
    chat template, under llama.cpp's names."""
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(meta["pre"])
    writer.add_token_list(meta["tokens"])
    writer.add_token_types(meta["types"])
    writer.add_token_merges(meta["merges"])
    adders = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "unk": writer.add_unk_token_id,
        "pad": writer.add_pad_token_id,
    }
    for key, token_id in meta["special"].items():
        adders[key](token_id)
    writer.add_add_bos_token(meta["add_bos"])
    writer.add_add_eos_token(meta["add_eos"])
    if meta["chat_template"]:
        writer.add_chat_template(meta["chat_template"])


@contextlib.contextmanager
def parsed_once() -> Iterator[None]:
    """Inside, transformers' GGUF loading parses each file once and builds gguf's tensor-name map once.

    ``from_pretrained(..., gguf_file=...)`` reads a file's metadata three times (for the config, the weights and the
    tokenizer), each time walking the whole vocabulary and merge list, and rebuilds the tensor-name map for every
    submodule it visits: loading SmolLM2-135M's GGUF took 40 s, of which the three parses 22 s and the 398 name
    maps 9.5 s (profiled, 2026-12-07, one thread). transformers imports both names from ``gguf`` at call time, so
    they are swapped for caching ones here and put back on leaving. The cache holds only this block's files, which
    the block only reads."""
    import gguf

    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], object] = {}

    def cached_reader(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = reader_class(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = cached_reader, functools.cache(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_class, name_map


def load_gguf(path: str | Path):
    """Reload a GGUF file with transformers in fp32 -> ``(model, tokenizer)``, as a user of the file would."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    with parsed_once():
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# ChatML in Ollama's Go template language: the system prompt, then each user turn followed by the assistant
# cue and each assistant answer closed by <|im_end|>, as the Hugging Face ChatML templates render them.
CHATML_OLLAMA_TEMPLATE = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    '{{ range .Messages }}{{ if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n'
    "<|im_start|>assistant\n"
    '{{ else if eq .Role "assistant" }}{{ .Content }}<|im_end|>\n{{ end }}{{ end }}'
)


def is_chatml(chat_template: str | None) -> bool:
    """Does a Jinja chat template write ChatML turns (``<|im_start|>role ... <|im_end|>``)?"""
    return bool(chat_template) and "<|im_start|>" in chat_template and "<|im_end|>" in chat_template


def default_system_prompt(chat_template: str) -> str | None:
    """The system prompt a ChatML template inserts when a chat has none (SmolLM2's does), or None."""
    found = re.search(r"<\|im_start\|>system\\n(.+?)<\|im_end\|>", chat_template)
    return found.group(1) if found else None


def modelfile_text(gguf_name: str, tokenizer, system: str | None = None) -> str:
    """An Ollama ``Modelfile`` for a GGUF file beside it.

    A ChatML chat template becomes a TEMPLATE; any other gets none and a comment (Ollama then falls back on
    the file's ``tokenizer.chat_template`` when it recognises it). SYSTEM is ``system`` (the task instruction)
    or else the template's own default system prompt; stop parameters are the turn markers and EOS.

    Raises:
        ValueError: a system prompt containing ``\"\"\"``, which would end the Modelfile's quoted block.
    """
    template = tokenizer.chat_template
    lines = [
        f"# Written by ftlib.engine.export: `ollama create NAME -f {MODELFILE_NAME}` in this folder.",
        f"FROM ./{gguf_name}",
    ]
    stops = []
    if is_chatml(template):
        lines.append(f'TEMPLATE """{CHATML_OLLAMA_TEMPLATE}"""')
        stops += ["<|im_start|>", "<|im_end|>"]
        system = system or default_system_prompt(template)
    else:
        lines.append("# No TEMPLATE: the chat template is not ChatML, so it was not translated; check it in Ollama.")
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    if system:
        if '"""' in system:
            raise ValueError('the system prompt contains """, which cannot be quoted in a Modelfile')
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    lines.append("PARAMETER temperature 0")  # greedy, as the parity checks decode
    return "\n".join(lines) + "\n"
