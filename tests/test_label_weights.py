"""TrainConfig.label_token_weight: a loss weight on the answer tokens that spell a closed-label value."""

import pytest
import torch
from conftest import with_active_lora
from transformers import TrainingArguments

from ftlib.core import runs
from ftlib.core.config import TrainConfig
from ftlib.course import cli
from ftlib.data.batches import IGNORE_INDEX, PaddingCollator, SupervisedDataset
from ftlib.engine.trainer import FtlibTrainer, answer_only_loss

pytestmark = pytest.mark.unit


def weighted_runs(tokenizer, example) -> list[tuple[str, float]]:
    """The decoded text of each run of consecutive label tokens with one weight other than 1, with that weight."""
    found, current, weight = [], [], None
    for token, label, w in zip(example["input_ids"], example["labels"], example["label_weights"]):
        if label != IGNORE_INDEX and w != 1.0 and w == weight:
            current.append(token)
            continue
        if current:
            found.append((tokenizer.decode(current), weight))
        current, weight = ([token], w) if label != IGNORE_INDEX and w != 1.0 else ([], None)
    if current:
        found.append((tokenizer.decode(current), weight))
    return found


@pytest.fixture
def billing_high(tickets):
    return dict(tickets[2], urgency="high")  # {"category":"billing","urgency":"high","reply":"..."}


@pytest.fixture
def lora_model(tiny):
    model, tokenizer = tiny
    return with_active_lora(model, TrainConfig(lora_r=8)), tokenizer


def test_weights_land_on_exactly_the_label_value_tokens(tiny, billing_high, task):
    _, tokenizer = tiny
    example = SupervisedDataset([billing_high], tokenizer, 512, task, label_token_weight=3.0)[0]
    assert weighted_runs(tokenizer, example) == [("billing", 3.0), ("high", 3.0)]
    for label, weight in zip(example["labels"], example["label_weights"]):
        assert (weight == 0.0) == (label == IGNORE_INDEX)  # the prompt weighs nothing, the answer and EOS >= 1


def test_label_value_spans_follow_the_field_order_and_skip_quoted_keys(task):
    answer = '{"reply":"we saw \\"category\\":\\"outage\\"","urgency":"low","category":"account"}'
    assert [answer[start:end] for start, end in task.label_value_spans(answer)] == ["low", "account"]
    assert task.label_value_spans("not json") == []


def test_weight_one_adds_no_weights_and_keeps_the_loss(lora_model, tickets, task):
    model, tokenizer = lora_model
    dataset = SupervisedDataset(tickets, tokenizer, 512, task, label_token_weight=1.0)
    assert all("label_weights" not in example for example in dataset)
    batch = PaddingCollator(tokenizer.pad_token_id, answer_logits_only=True)([dict(e) for e in dataset])
    assert "label_weights" not in batch
    outputs = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=batch["logits_to_keep"]
    )
    unweighted = answer_only_loss(outputs, batch["labels"])
    ones = (batch["labels"] != IGNORE_INDEX).float()  # the weights a weight of 1 would give
    assert answer_only_loss(outputs, batch["labels"], weights=ones).item() == pytest.approx(unweighted.item(), abs=1e-6)


def answer_gradients(model, batch, weights):
    model.zero_grad()
    outputs = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=batch["logits_to_keep"]
    )
    loss = answer_only_loss(outputs, batch["labels"], weights=weights)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


def test_weight_three_changes_the_loss_and_the_gradient(lora_model, tickets, task):
    model, tokenizer = lora_model
    dataset = SupervisedDataset(tickets, tokenizer, 512, task, label_token_weight=3.0)
    batch = PaddingCollator(tokenizer.pad_token_id, answer_logits_only=True)([dict(e) for e in dataset])
    weights = batch["label_weights"]
    assert weights.dtype == torch.float and set(weights.unique().tolist()) == {0.0, 1.0, 3.0}
    assert (weights[batch["labels"] == IGNORE_INDEX] == 0).all()  # padding and prompt: 0

    plain_loss, plain = answer_gradients(model, batch, None)
    weighted_loss, weighted = answer_gradients(model, batch, weights)
    assert weighted_loss != pytest.approx(plain_loss, abs=1e-4)
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, weighted))

    # by hand: sum(w * token CE) / sum(w) over the answer tokens
    outputs = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=batch["logits_to_keep"]
    )
    scored = batch["labels"][:, 1:] != IGNORE_INDEX
    losses = torch.nn.functional.cross_entropy(outputs.logits, batch["labels"][:, 1:][scored], reduction="none")
    w = weights[:, 1:][scored]
    assert weighted_loss == pytest.approx(((w * losses).sum() / w.sum()).item(), abs=1e-5)


@pytest.mark.parametrize("share_prefix", [False, True])
def test_trainer_compute_loss_weighs_on_both_paths(lora_model, tickets, task, tmp_path, share_prefix):
    model, tokenizer = lora_model
    dataset = SupervisedDataset(tickets, tokenizer, 512, task, label_token_weight=3.0)
    collator = PaddingCollator(tokenizer.pad_token_id, answer_logits_only=True, share_prefix=share_prefix)
    batch = collator([dict(e) for e in dataset])
    expected, _ = answer_gradients(model, batch, batch["label_weights"])
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = FtlibTrainer(model=model, args=args, compute_loss_func=answer_only_loss)
    model.train()
    loss = trainer.compute_loss(model, dict(batch))
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert trainer.compute_loss_func is answer_only_loss  # the weighted loss was for that batch only
    # the accumulated batch's normalizer is its weight sum
    count = trainer._get_num_items_in_batch([batch, batch], torch.device("cpu"))
    assert float(count) == pytest.approx(2 * float(batch["label_weights"][:, 1:].sum()))


def test_train_command_records_the_label_token_weight(tmp_path, tickets):
    from test_cli import train_command  # tests/, on pytest's path

    extra = ("--max-steps", "2", "--no-save-checkpoints", "--label-token-weight", "3", "--gradient-checkpointing")
    assert cli.main(train_command(tmp_path, *extra)) == 0
    record = runs.load_run(tmp_path / "run")
    assert record.config.label_token_weight == 3.0
    assert record.metrics.train_loss == record.metrics.train_loss  # not NaN
