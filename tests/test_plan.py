"""GPU plans: every GPU class gets a run that fits under the estimator with the safety margin (CUDA mocked)."""

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from ftlib.engine import plan, profiles
from ftlib.engine.memory import estimate_memory, model_config_for
from ftlib.engine.models import REGISTRY
from ftlib.lessons import lesson

CLASSES = list(plan.GPU_CLASSES)  # T4, L4, A100 40, A100 80, H100, smallest first


def mock_cuda(monkeypatch, name: str, total_bytes: int, bf16: bool) -> None:
    """Make torch report one CUDA device with these properties (and drop CI's FTLIB_PROFILE)."""
    properties = SimpleNamespace(name=name, total_memory=total_bytes, major=8 if bf16 else 7, minor=0 if bf16 else 5)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=0: properties)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    monkeypatch.delenv("FTLIB_PROFILE", raising=False)


def mock_class(monkeypatch, label: str) -> None:
    name, gib, bf16 = plan.GPU_CLASSES[label]
    mock_cuda(monkeypatch, name, int(gib * 2**30), bf16)


def estimated_peak(chosen: plan.GpuPlan, profile: profiles.Profile) -> int:
    """The plan's peak recomputed from its choices alone, straight from the estimator."""
    return estimate_memory(
        model_config_for(chosen.base_model),
        chosen.method,
        chosen.config.batch_size,
        profile.train.max_length,
        device="cuda",
        lora_r=profile.train.lora_r,
        gradient_checkpointing=chosen.config.gradient_checkpointing,
        answer_fraction=plan.PLAN_ANSWER_FRACTION,
    ).total


@pytest.mark.unit
def test_base_model_loads_unquantized_where_the_plan_trains_it_in_16_bits(monkeypatch, tmp_path):
    mock_class(monkeypatch, "L4 24 GB")
    assert lesson.start("auto", run_dir=str(tmp_path)).base_quantization is None
    monkeypatch.undo()
    assert lesson.start("cpu", run_dir=str(tmp_path)).base_quantization is None


@pytest.mark.unit
@pytest.mark.parametrize("lesson_method", [None, "lora", "qlora"])
@pytest.mark.parametrize("label", CLASSES)
def test_every_gpu_class_gets_a_plan_that_fits(monkeypatch, label, lesson_method):
    mock_class(monkeypatch, label)
    profile, chosen = profiles.resolve_run("auto", lesson_method=lesson_method)
    total = torch.cuda.get_device_properties(0).total_memory
    assert profile.name == "gpu" and chosen is not None
    assert estimated_peak(chosen, profile) == chosen.estimate.total <= plan.SAFETY_FRACTION * total
    planned = chosen.config
    assert planned.batch_size * planned.grad_accum == profiles.PROFILES["gpu"].train.batch_size  # effective batch
    assert lesson_method in (None, chosen.method)
    # The profile carries the plan's config itself: nothing copied field by field.
    assert (profile.base_model, profile.method, profile.train) == (chosen.base_model, chosen.method, planned)
    assert planned.eval_batch_size <= planned.batch_size and profile.decoding.batch_size <= planned.eval_batch_size
    # Only the plan's fields changed; the rest of the gpu profile's config is kept.
    assert planned.max_steps == profiles.PROFILES["gpu"].train.max_steps


@pytest.mark.unit
def test_t4_gets_fp16_and_qlora_for_the_7b_model(monkeypatch, tmp_path):
    mock_class(monkeypatch, "T4 16 GB")
    L = lesson.start("auto", run_dir=str(tmp_path))
    assert L.plan.dtype == "fp16" and L.device.dtype == torch.float16
    assert (L.plan.base_model, L.plan.method) == ("qwen2.5-7b-instruct", "qlora")
    # Lessons 01 and 05 generate with that base model: in 4 bits, as its 16-bit weights (15.2 GB) exceed a T4.
    assert L.base_quantization == "nf4"
    # Why not LoRA: the 16-bit 7B model alone is over the T4's budget even at batch 1 with checkpointing.
    gpu = plan.detect_gpu()
    assert (
        plan._smallest_need(model_config_for("qwen2.5-7b-instruct"), "lora", L.profile.train).total > gpu.budget_bytes
    )
    rows, note = L.run_summary()
    assert rows[0]["dtype"] == "fp16" and "bf16" not in str(rows) and "not measured here" in note


@pytest.mark.unit
@pytest.mark.parametrize("lesson_method", [None, "lora", "qlora"])
def test_bigger_cards_get_bigger_or_equal_models(monkeypatch, lesson_method):
    sizes = []
    for label in sorted(CLASSES, key=lambda label: plan.GPU_CLASSES[label][1]):
        mock_class(monkeypatch, label)
        chosen = profiles.resolve_run("gpu", lesson_method=lesson_method)[1]
        sizes.append(REGISTRY[chosen.base_model].params_b)
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-1] or lesson_method != "lora"  # LoRA of the 7B model does not fit a T4


@pytest.mark.unit
def test_other_cards_are_planned_by_their_memory(monkeypatch):
    mock_cuda(monkeypatch, "NVIDIA GeForce RTX 3070", 8 * 2**30, True)
    chosen = profiles.resolve_run("auto")[1]
    assert chosen.estimate.total <= plan.SAFETY_FRACTION * 8 * 2**30
    mock_cuda(monkeypatch, "a 1 GB card", 2**30, False)
    with pytest.raises(plan.PlanDoesNotFit, match="profile='cpu'"):
        profiles.resolve_run("auto")


@pytest.mark.unit
def test_an_explicit_choice_that_cannot_fit_names_what_would(monkeypatch, tmp_path):
    mock_class(monkeypatch, "T4 16 GB")
    with pytest.raises(plan.PlanDoesNotFit) as error:
        lesson.start("auto", run_dir=str(tmp_path), base_model="qwen2.5-7b-instruct", method="lora")
    message = str(error.value)
    assert "Tesla T4" in message and "qwen2.5-7b-instruct with lora needs at least" in message
    assert "base_model='qwen2.5-7b-instruct', method='qlora'" in message
    assert "base_model='qwen2.5-1.5b-instruct', method='lora'" in message


@pytest.mark.unit
def test_explicit_choices_that_fit_win(monkeypatch, tmp_path):
    mock_class(monkeypatch, "A100 80 GB")
    L = lesson.start(
        "gpu", run_dir=str(tmp_path), base_model="qwen2.5-1.5b-instruct", method="qlora", lesson_method="lora"
    )
    assert (L.profile.base_model, L.profile.method, L.plan.method) == ("qwen2.5-1.5b-instruct", "qlora", "qlora")
    assert L.profile.train.max_steps == profiles.PROFILES["gpu"].train.max_steps


@pytest.mark.unit
def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="method must be one of lora, qlora or None, not 'full'"):
        profiles.resolve_run("cpu", method="full")


@pytest.mark.unit
def test_cpu_path_is_unchanged(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("FTLIB_PROFILE", raising=False)
    assert profiles.resolve_run("auto") == (profiles.PROFILES["cpu"], None)
    assert profiles.resolve_run("auto", lesson_method="lora") == (
        replace(profiles.PROFILES["cpu"], method="lora"),
        None,
    )
    assert profiles.resolve_run("gpu")[1] is None  # the gpu profile without CUDA: no plan, as before
    rows, note = profiles.run_summary(profiles.PROFILES["cpu"], None, "CPU x2")
    assert note.startswith("No CUDA GPU was found") and rows[0]["model"] == profiles.PROFILES["cpu"].base_model


@pytest.mark.unit
def test_the_environment_profile_wins_over_the_gpu(monkeypatch):
    mock_class(monkeypatch, "H100 80 GB")
    monkeypatch.setenv("FTLIB_PROFILE", "smoke")
    assert profiles.resolve_run("auto") == (profiles.PROFILES["smoke"], None)


@pytest.mark.unit
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_plan_for_the_real_gpu_fits_its_free_memory():
    gpu = plan.detect_gpu()
    chosen = plan.plan_gpu(gpu, profiles.PROFILES["gpu"].train)
    free, total = torch.cuda.mem_get_info()
    assert gpu.total_bytes == total and chosen.estimate.total <= min(free, gpu.budget_bytes)
