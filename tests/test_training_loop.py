"""Training-loop features of ftlib.engine.train: exact loss shortcuts, resume, best checkpoint, early stopping,
merge."""

import json

import pytest
import torch
from conftest import with_active_lora
from transformers import AutoModelForCausalLM

from ftlib.core.config import TrainConfig
from ftlib.data.batches import PaddingCollator, SupervisedDataset, forward_with_shared_prefix
from ftlib.engine import adapters, train, trainer
from ftlib.engine.models import count_parameters

pytestmark = pytest.mark.unit


def config(**overrides):
    settings = dict(
        max_steps=6,
        batch_size=4,
        eval_steps=2,
        warmup_steps=0,
        learning_rate=1e-2,
        lora_r=8,
        max_length=512,
        eval_batch_size=4,
        seed=0,
    )
    return TrainConfig(**(settings | overrides))


def batch_of(tokenizer, records, task, label_token_weight=1.0, **collator_options):
    dataset = SupervisedDataset(records, tokenizer, 512, task, label_token_weight)
    return PaddingCollator(tokenizer.pad_token_id, **collator_options)([dataset[i] for i in range(len(dataset))])


def gradients(model):
    return [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.fixture
def lora_model(tiny, task):
    model, tokenizer = tiny
    return with_active_lora(model, config()), tokenizer


def test_answer_only_logits_give_the_full_loss_and_gradients(lora_model, tickets, task):
    model, tokenizer = lora_model
    batch = batch_of(tokenizer, tickets, task, answer_logits_only=True)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    full.backward()
    expected = gradients(model)
    model.zero_grad()
    outputs = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=batch["logits_to_keep"]
    )
    assert outputs.logits.shape[0] == int((batch["labels"][:, 1:] != -100).sum())
    loss = trainer.answer_only_loss(outputs, batch["labels"])
    loss.backward()
    assert loss.item() == pytest.approx(full.item(), abs=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(gradients(model), expected))


@pytest.mark.parametrize("label_token_weight", [1.0, 3.0])
def test_shared_prefix_forward_matches_the_plain_forward(lora_model, tickets, task, label_token_weight):
    model, tokenizer = lora_model
    batch = batch_of(tokenizer, tickets, task, label_token_weight, answer_logits_only=True, share_prefix=True)
    prefix = batch.pop("shared_prefix_length")
    weights = batch.get("label_weights")
    assert (weights is None) == (label_token_weight == 1.0)  # weight 1: no weights tensor at all
    assert prefix > 10  # the system prompt and the user header
    plain = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=batch["logits_to_keep"]
    )
    trainer.answer_only_loss(plain, batch["labels"], weights=weights).backward()
    expected = gradients(model)
    model.zero_grad()
    shared = forward_with_shared_prefix(model, batch, prefix)
    trainer.answer_only_loss(shared, batch["labels"], weights=weights).backward()
    assert torch.allclose(shared.logits, plain.logits, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(gradients(model), expected))


def test_shared_prefix_rows_do_not_see_each_other(lora_model, tickets, task):
    """Each row's answer logits in a shared-prefix batch equal those of the row run alone, unpadded."""
    model, tokenizer = lora_model
    model.eval()
    batch = batch_of(tokenizer, tickets, task, answer_logits_only=True, share_prefix=True)
    with torch.no_grad():
        together = forward_with_shared_prefix(model, batch, batch["shared_prefix_length"]).logits
        alone = []
        for record in tickets:
            row = batch_of(tokenizer, [record], task, answer_logits_only=True)
            alone.append(model(input_ids=row["input_ids"], logits_to_keep=row["logits_to_keep"]).logits)
    assert torch.allclose(together, torch.cat(alone), atol=1e-5)


def test_resumed_run_continues_the_same_loss_curve(tmp_path, cpu, tickets, task, monkeypatch):
    records = tickets * 4
    whole = train.train(
        "tiny-random-llama", records, tickets, tmp_path / "whole", config=config(), task=task, device=cpu
    )

    original_step = trainer.FtlibTrainer.training_step
    calls = {"n": 0}

    def crash_at_step_four(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated interruption after the step-2 checkpoint")
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(trainer.FtlibTrainer, "training_step", crash_at_step_four)
    with pytest.raises(KeyboardInterrupt):
        train.train("tiny-random-llama", records, tickets, tmp_path / "resumed", config=config(), task=task, device=cpu)
    assert not (tmp_path / "resumed").exists() and (tmp_path / ".resumed.partial").exists()
    monkeypatch.setattr(trainer.FtlibTrainer, "training_step", original_step)
    resumed = train.train(
        "tiny-random-llama", records, tickets, tmp_path / "resumed", config=config(), task=task, device=cpu, resume=True
    )

    assert resumed.record.checkpoints.resumed_from == "checkpoint-2"
    assert [p["step"] for p in resumed.history["train"]] == list(range(1, 7))
    assert [p["loss"] for p in resumed.history["train"]] == pytest.approx(
        [p["loss"] for p in whole.history["train"]], abs=1e-4
    )
    assert [p["loss"] for p in resumed.history["val"]] == pytest.approx(
        [p["loss"] for p in whole.history["val"]], abs=1e-4
    )


def test_resume_refuses_a_changed_config_and_a_missing_checkpoint(tmp_path, cpu, tickets, task):
    with pytest.raises(FileNotFoundError, match="holds no complete checkpoint"):
        train.train(
            "tiny-random-llama",
            tickets,
            tickets,
            tmp_path / "none",
            config=config(),
            task=task,
            device=cpu,
            resume=True,
        )
    scratch = tmp_path / ".run.partial"
    train.prepare_scratch(scratch, False, {"config": {"learning_rate": 0.01}})
    (scratch / "trainer" / "checkpoint-2").mkdir(parents=True)
    (scratch / "trainer" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    with pytest.raises(ValueError, match="config changed"):
        train.prepare_scratch(scratch, True, {"config": {"learning_rate": 0.02}})


def overfitting_run(tmp_path, cpu, tickets, task, **overrides):
    """Train on the right format with wrong replies: validation loss falls, then rises after step 10."""
    wrong = [dict(t, reply="zzzz qqqq " * 8) for t in tickets]
    settings = dict(max_steps=12, learning_rate=0.05, lr_scheduler="constant") | overrides
    return train.train(
        "tiny-random-llama", wrong * 4, tickets, tmp_path / "overfit", config=config(**settings), task=task, device=cpu
    )


def test_best_checkpoint_is_the_lowest_validation_loss(tmp_path, cpu, tickets, task):
    result = overfitting_run(tmp_path, cpu, tickets, task)
    val = {p["step"]: p["loss"] for p in result.history["val"]}
    best_step = min(val, key=val.get)
    assert best_step < 12, f"the test needs a run whose last step is not its best: {val}"
    assert result.record.checkpoints.best_step == best_step
    assert result.record.metrics.final_val_loss == pytest.approx(val[best_step], abs=1e-4)
    assert result.record.metrics.final_val_loss < val[12]


def test_early_stopping_ends_the_run(tmp_path, cpu, tickets, task):
    result = overfitting_run(tmp_path, cpu, tickets, task, max_steps=20, early_stopping_patience=1)
    assert result.record.checkpoints.stopped_early
    assert result.record.checkpoints.steps_run == 12


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_epochs=1), "set exactly one of max_steps"),
        (dict(max_steps=None), "set exactly one of max_steps"),
        (dict(max_steps=0), "max_steps must be >= 1"),  # 0 once read as "unset" and trained a whole epoch
        (dict(max_steps=None, num_epochs=0), "num_epochs > 0"),
        (dict(lr_scheduler="triangle"), "lr_scheduler must be one of"),
        (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
        (dict(early_stopping_patience=2, save_checkpoints=False), "early_stopping_patience needs save_checkpoints"),
        (dict(method="full", lora_alpha=0), "lora_alpha must be >= 1"),
        (dict(label_token_weight=0), "label_token_weight must be > 0"),
    ],
)
def test_more_impossible_configs_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        config(**overrides).validate()


def test_epochs_instead_of_steps(tmp_path, cpu, tickets, task):
    result = train.train(
        "tiny-random-llama",
        tickets * 2,
        tickets,
        tmp_path / "epochs",
        config=config(max_steps=None, num_epochs=2, batch_size=4),
        task=task,
        device=cpu,
    )
    assert result.record.checkpoints.steps_run == 4  # 8 examples / 4 per step x 2 epochs


def test_full_fine_tuning_trains_every_weight(tmp_path, cpu, tickets, task):
    result = train.train(
        "tiny-random-llama",
        tickets * 2,
        tickets,
        tmp_path / "full",
        config=config(method="full", max_steps=2, learning_rate=1e-3),
        task=task,
        device=cpu,
    )
    assert result.record.parameters.trainable == result.record.parameters.total
    assert (tmp_path / "full" / "model" / "model.safetensors").exists()


@pytest.fixture(scope="module")
def trained_adapters(tmp_path_factory, cpu):
    from ftlib.core.tasks import SUPPORT_TICKETS
    from tests.conftest import TICKETS

    folder = tmp_path_factory.mktemp("merge")
    runs = {}
    for method in ("lora", "qlora"):
        runs[method] = train.train(
            "tiny-random-llama",
            TICKETS * 4,
            TICKETS,
            folder / method,
            config=config(method=method, save_checkpoints=False),
            task=SUPPORT_TICKETS,
            device=cpu,
        )
    return folder, runs


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_merged_export_matches_base_plus_adapter(trained_adapters, cpu, method):
    folder, runs = trained_adapters
    exported = adapters.merge_and_export(
        "tiny-random-llama", runs[method].adapter_dir, folder / f"{method}-merged", device=cpu
    )
    merged = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)
    assert not any("4bit" in type(m).__name__ or "lora" in type(m).__name__.lower() for m in merged.modules())
    assert merged.dtype == torch.float32
    assert json.loads((exported / "merge.json").read_text())["base_model"] == "tiny-random-llama"
    # Reference: the same adapter on the same full-precision base, unmerged.
    reference, tokenizer = adapters.load_adapter("tiny-random-llama", runs[method].adapter_dir, device=cpu)
    ids = tokenizer("my router is on fire", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = reference(ids).logits
        with reference.disable_adapter():
            assert not torch.allclose(reference(ids).logits, expected, atol=1e-4)  # the adapter matters
        assert torch.allclose(merged(ids).logits, expected, atol=1e-4)
    lora_weights = sum(p.numel() for name, p in reference.named_parameters() if "lora_" in name)
    assert count_parameters(merged).total == count_parameters(reference).total - lora_weights


def test_shared_prefix_stops_before_the_first_scored_position(tiny, tickets, task):
    """One row (or rows whose answers start alike) share answer tokens too: those logits must not be skipped."""
    _, tokenizer = tiny
    for rows in ([tickets[0]], [tickets[0], dict(tickets[0], reply="Something else entirely.")]):
        batch = batch_of(tokenizer, rows, task, answer_logits_only=True, share_prefix=True)
        first_scored = int(batch["logits_to_keep"].float().argmax(dim=1).min())
        assert 0 < batch["shared_prefix_length"] <= first_scored


def test_batch_of_one_trains(tmp_path, cpu, tickets, task):
    result = train.train(
        "tiny-random-llama",
        tickets,
        tickets,
        tmp_path / "one",
        config=config(batch_size=1, max_steps=2),
        task=task,
        device=cpu,
    )
    assert len(result.history["train"]) == 2


def test_training_continues_from_a_saved_adapter(tmp_path, cpu, tickets, task):
    first = train.train(
        "tiny-random-llama",
        tickets * 4,
        tickets,
        tmp_path / "first",
        config=config(max_steps=4, save_checkpoints=False),
        task=task,
        device=cpu,
    )
    more = train.train(
        "tiny-random-llama",
        tickets * 4,
        tickets,
        tmp_path / "more",
        config=config(max_steps=2, save_checkpoints=False),
        task=task,
        device=cpu,
        adapter=first.adapter_dir,
    )
    fresh_first_loss = first.history["train"][0]["loss"]
    assert more.history["train"][0]["loss"] < 0.9 * fresh_first_loss  # it starts where the first run ended
    assert more.record.continued_from == str(first.adapter_dir)
    assert more.record.parameters.trainable == first.record.parameters.trainable
    with pytest.raises(ValueError, match="a full fine-tune has none"):
        train.train(
            "tiny-random-llama",
            tickets,
            tickets,
            tmp_path / "x",
            config=config(method="full"),
            task=task,
            device=cpu,
            adapter=first.adapter_dir,
        )


def test_resume_skips_checkpoints_a_kill_left_half_saved(tmp_path):
    trainer = tmp_path / "trainer"
    assert train.last_complete_checkpoint(trainer) is None  # no folder yet
    for step, state in ((2, "{}"), (4, '{"global_step": 4, "log_hi'), (6, None), (10, "{}")):
        (trainer / f"checkpoint-{step}").mkdir(parents=True)
        if state is not None:
            (trainer / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (trainer / "checkpoint-12.tmp").mkdir()  # not a checkpoint name
    assert train.last_complete_checkpoint(trainer) == str(trainer / "checkpoint-10")  # 10 > 2: by number
    (trainer / "checkpoint-10" / "trainer_state.json").unlink()
    assert train.last_complete_checkpoint(trainer) == str(trainer / "checkpoint-2")  # 6 lacks it, 4 is cut short
