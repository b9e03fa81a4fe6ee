import pytest
import torch
from memory_harness import measure_training_peak, saved_activation_bytes  # tests/, on pytest's path
from transformers import AutoModelForCausalLM, LlamaConfig

from ftlib.core.config import TrainConfig
from ftlib.data.batches import PaddingCollator, SupervisedDataset
from ftlib.engine import memory, models, plan
from ftlib.engine.adapters import attach_lora

# hidden 64, intermediate 128, 2 layers, 4 heads of 16, 2 key/value heads, 259 tokens, tied embeddings.
TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=259,
    tie_word_embeddings=True,
)


@pytest.mark.unit
def test_tiny_config_bytes_computed_by_hand():
    # Per layer: q 64x64, k 64x32, v 64x32, o 64x64, gate/up/down 64x128 = 36864; 2 layers = 73728 linear.
    # Embedding 259x64 = 16576 (tied, no lm_head); norms 2 layers x 2 x 64 + final 64 = 320. Total 90624.
    shape = memory.ModelShape.from_config(TINY)
    assert shape.parameter_counts() == {"linear": 73728, "embedding": 16576, "lm_head": 0, "norm_and_bias": 320}
    lora = memory.estimate_memory(TINY, "lora", 2, 32, lora_r=8)
    assert lora.weights == 90624 * 4  # fp32 on CPU
    assert memory.estimate_memory(TINY, "lora", 2, 32, device="cuda").weights == 90624 * 2  # bf16
    # LoRA r=8 per layer: q 8x(64+64), k 8x(64+32), v the same, o 8x(64+64), gate/up/down 8x(64+128) = 8192.
    assert lora.adapters == 2 * 8192 * 4
    assert lora.gradients == lora.adapters and lora.optimizer == 2 * lora.adapters  # AdamW: two fp32 moments
    # NF4: 0.5 byte + a uint8 absmax per 64 + an fp32 absmax per 64*256; everything else fp32.
    qlora = memory.estimate_memory(TINY, "qlora", 2, 32, lora_r=8)
    assert qlora.weights == round(73728 * 0.5 + 73728 / 64 + 73728 * 4 / (64 * 256)) + (16576 + 320) * 4
    full = memory.estimate_memory(TINY, "full", 2, 32)
    assert full.all_gradients == 90624 * 4 and full.optimizer == 2 * 90624 * 4 and full.adapters == 0


@pytest.mark.unit
def test_shape_matches_the_real_tiny_model(tiny):
    model, _ = tiny
    config = memory.model_config_for("tiny-random-llama")
    assert memory.ModelShape.from_config(config).parameters == models.count_parameters(model).total


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_registry_architectures_give_the_published_parameter_counts(name):
    config = memory.model_config_for(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    counted = sum(parameter.numel() for parameter in model.parameters())
    assert memory.ModelShape.from_config(config).parameters == counted
    assert counted == pytest.approx(models.REGISTRY[name].params, rel=0.01)


@pytest.mark.unit
def test_model_config_for_reads_a_folder_and_rejects_unknown_names(tmp_path):
    LlamaConfig(**TINY).save_pretrained(tmp_path)
    assert memory.ModelShape.from_config(memory.model_config_for(str(tmp_path))) == memory.ModelShape.from_config(TINY)
    with pytest.raises(KeyError, match="No architecture known for 'gpt-17'"):
        memory.model_config_for("gpt-17")


@pytest.mark.unit
def test_model_config_for_reads_an_unknown_name_from_its_source_only_when_given_one(tmp_path, monkeypatch):
    LlamaConfig(**TINY).save_pretrained(tmp_path)
    asked = []

    def resolve(name, source):
        asked.append((name, source))
        return str(tmp_path)

    monkeypatch.setattr(models, "resolve_model_source", resolve)
    config = memory.model_config_for("org/some-hub-model", source="hub")
    assert memory.ModelShape.from_config(config) == memory.ModelShape.from_config(TINY)
    assert asked == [("org/some-hub-model", "hub")]
    memory.model_config_for("smollm2-135m-instruct", source="hub")  # a stored shape: read offline, no source asked
    assert asked == [("org/some-hub-model", "hub")]


@pytest.mark.unit
@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("method", memory.METHODS)
@pytest.mark.parametrize("checkpointing", [False, True])
def test_estimate_grows_with_batch_and_length(device, method, checkpointing):
    def total(batch, seq_len):
        return memory.estimate_memory(
            "smollm2-135m-instruct",
            method,
            batch,
            seq_len,
            device=device,
            gradient_checkpointing=checkpointing,
            shared_prefix=16,
        ).total

    # Non-decreasing: where full fine-tuning peaks at the optimizer step, the batch does not matter.
    assert total(1, 256) <= total(2, 256) <= total(8, 256) <= total(32, 256)
    assert total(4, 64) <= total(4, 256) <= total(4, 1024) <= total(4, 4096)
    assert total(1, 256) < total(32, 256) and total(4, 64) < total(4, 4096)


@pytest.mark.unit
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_lora_needs_less_than_full_and_qlora_weights_less_than_lora(device):
    for name in ("smollm2-135m-instruct", "qwen2.5-1.5b-instruct", "llama-3.1-8b-instruct"):
        estimates = {method: memory.estimate_memory(name, method, 4, 512, device=device) for method in memory.METHODS}
        assert estimates["lora"].total < estimates["full"].total
        assert estimates["qlora"].weights < estimates["lora"].weights
        assert estimates["lora"].optimizer < estimates["full"].optimizer / 10
    big = {
        method: memory.estimate_memory(
            "llama-3.1-8b-instruct", method, 1, 2048, device="cuda", gradient_checkpointing=True
        )
        for method in memory.METHODS
    }
    assert big["qlora"].total < big["lora"].total < big["full"].total


@pytest.mark.unit
def test_checkpointing_and_the_shared_prefix_save_activations():
    plain = memory.estimate_memory("smollm2-135m-instruct", "lora", 8, 512)
    assert (
        memory.estimate_memory("smollm2-135m-instruct", "lora", 8, 512, gradient_checkpointing=True).activations
        < plain.activations / 4
    )
    assert (
        memory.estimate_memory("smollm2-135m-instruct", "lora", 8, 512, shared_prefix=256).activations
        < 0.7 * plain.activations
    )
    assert (
        memory.estimate_memory("smollm2-135m-instruct", "lora", 8, 512, answer_fraction=0.1).activations
        < plain.activations
    )


@pytest.mark.unit
def test_estimate_rejects_impossible_settings():
    with pytest.raises(ValueError, match="method must be"):
        memory.estimate_memory(TINY, "dora", 1, 8)
    with pytest.raises(ValueError, match="shared_prefix"):
        memory.estimate_memory(TINY, "lora", 2, 8, shared_prefix=8)
    with pytest.raises(ValueError, match="model_config lacks vocab_size"):
        memory.estimate_memory({k: v for k, v in TINY.items() if k != "vocab_size"}, "lora", 1, 8)


@pytest.mark.unit
def test_as_row_reports_gigabytes_that_add_up():
    estimate = memory.estimate_memory("smollm2-135m-instruct", "qlora", 8, 160, shared_prefix=63)
    row = estimate.as_row(digits=6)
    parts = sum(value for key, value in row.items() if key.endswith(" GB") and key != "total GB")
    assert row["total GB"] == pytest.approx(parts, abs=1e-5) == pytest.approx(estimate.total / 1e9, abs=1e-5)
    assert estimate.mapped_checkpoint > 0 and estimate.workspace > 0  # CPU QLoRA of an fp32 checkpoint
    assert (
        memory.estimate_memory("smollm2-135m-instruct", "qlora", 8, 160, checkpoint_dtype_bytes=2).mapped_checkpoint
        == 0
    )


@pytest.mark.unit
def test_gpu_table_is_consistent():
    rows = plan.gpu_memory_table()
    assert len(rows) == len(plan.GPU_TABLE_CANDIDATES) * len(memory.METHODS)
    gpus = sorted(plan.GPUS, key=plan.GPUS.get)
    for row in rows:
        fits = [row[gpu] == "yes" for gpu in gpus]
        assert fits == sorted(fits)  # fitting a card means fitting every larger one
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["method"]] = row["total GB"]
    for totals in by_model.values():
        assert totals["qlora"] < totals["lora"] < totals["full"]
    smallest = next(row for row in rows if row["model"] == "smollm2-135m-instruct" and row["method"] == "qlora")
    assert smallest[gpus[0]] == "yes"


@pytest.mark.unit
@pytest.mark.parametrize("method, share_prefix", [("lora", False), ("lora", True), ("full", False), ("full", True)])
def test_activation_formula_matches_what_autograd_saves(tiny, tickets, task, method, share_prefix):
    model, tokenizer = tiny
    model = attach_lora(model, TrainConfig(method=method)).train()
    dataset = SupervisedDataset(tickets, tokenizer, 512, task)
    collate = PaddingCollator(tokenizer.pad_token_id, answer_logits_only=True, share_prefix=share_prefix)
    batch = collate([dataset[i] for i in range(len(dataset))])
    rows, length = batch["input_ids"].shape
    answers = int(batch["logits_to_keep"].sum())
    prefix = int(batch.get("shared_prefix_length", 0))
    saved = saved_activation_bytes(model, batch, prefix)
    estimate = memory.estimate_memory(
        memory.model_config_for("tiny-random-llama"),
        method,
        rows,
        length,
        answer_fraction=answers / (rows * length),
        shared_prefix=prefix,
    )
    # The estimate's logit term holds three copies; autograd saves one (the log-softmax).
    logit_copy = 4 * answers * model.config.vocab_size
    assert estimate.activations - 2 * logit_copy == pytest.approx(saved, rel=0.03)


def ticket_records(count: int) -> list[dict]:
    """Ticket records of two lengths (a batch mixing them is padded), each starting differently."""
    return [
        {
            "id": f"r{k}",
            "category": "outage",
            "urgency": "high",
            "ticket": f"Order {k:03d}: my router stopped working this morning and the internet keeps dropping "
            f"every few minutes, please send someone" + (" today!" if k % 2 else ""),
            "reply": "Sorry about the drops; I've reset your line and booked a technician for tomorrow morning.",
        }
        for k in range(count)
    ]


@pytest.fixture(scope="module")
def random_llama(tmp_path_factory):
    """A random Llama of 20M parameters (hidden 256, 8 layers, SmolLM2's 49152-token vocabulary), saved in fp32."""
    folder = tmp_path_factory.mktemp("random-llama")
    tokenizer = models.load_tokenizer(models.DEFAULT_MODEL, source="embedded")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=8,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


@pytest.mark.integration
@pytest.mark.parametrize("method, checkpointing", [("full", False), ("lora", False), ("qlora", False), ("lora", True)])
def test_estimate_is_within_25_percent_of_measured_cpu_peak(random_llama, task, method, checkpointing):
    folder, tokenizer = random_llama
    batch, steps = 8, 2
    records = ticket_records(batch * steps)
    workload = memory.workload_from_records(records, tokenizer, task)
    config = TrainConfig(
        method=method,
        max_steps=steps,
        batch_size=batch,
        eval_batch_size=batch,
        warmup_steps=0,
        eval_steps=100,
        gradient_checkpointing=checkpointing,
        max_length=256,
    )
    measured = measure_training_peak(str(folder), records, config, task)["peak_rss_bytes"]
    estimate = memory.estimate_memory(
        memory.model_config_for(str(folder)),
        method,
        batch,
        workload.seq_len,
        answer_fraction=workload.answer_fraction,
        shared_prefix=workload.shared_prefix,
        gradient_checkpointing=checkpointing,
    )
    assert estimate.total == pytest.approx(measured, rel=0.25), (estimate.as_row(), measured / 1e9)
