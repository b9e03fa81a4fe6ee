import json

import pytest
import torch

from ftlib.data import batches
from ftlib.data import records as data
from ftlib.data.batches import IGNORE_INDEX
from ftlib.data.records import DataError

pytestmark = pytest.mark.unit


def write(tmp_path, text, name="f.jsonl", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_read_jsonl_reads_objects_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, '{"a": 1}\n\n{"a": 2}\n')
    assert data.read_jsonl(path) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"a": 1}\n{"a": \n', "line 2"),
        ("[1, 2]\n", "expected a JSON object"),
        ("", "holds no records"),
        ("\n  \n", "holds no records"),
    ],
)
def test_read_jsonl_errors_name_file_and_line(tmp_path, content, expected):
    path = write(tmp_path, content)
    with pytest.raises(DataError, match=expected) as info:
        data.read_jsonl(path)
    assert str(path) in str(info.value)


def test_read_jsonl_rejects_wrong_encoding_with_line(tmp_path):
    path = write(tmp_path, '{"a": "ok"}\n{"a": "caf\u00e9"}\n', encoding="latin-1")
    with pytest.raises(DataError, match="line 2.*not valid UTF-8"):
        data.read_jsonl(path)


def test_read_jsonl_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        data.read_jsonl(tmp_path / "nope.jsonl")


def test_three_shapes_become_messages():
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    prompt = {"prompt": "hi", "completion": "yo"}
    alpaca = {"instruction": "Say", "input": "hi", "output": "yo"}
    assert data.to_messages(chat) == chat["messages"]
    assert data.to_messages(prompt) == chat["messages"]
    assert data.to_messages(alpaca) == [
        {"role": "user", "content": "Say\n\nhi"},
        {"role": "assistant", "content": "yo"},
    ]


def test_task_record_becomes_json_answer(tickets, task):
    messages = data.to_messages(tickets[0], task)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert json.loads(messages[-1]["content"]) == {k: tickets[0][k] for k in ("category", "urgency", "reply")}


@pytest.mark.parametrize(
    "record, field, message",
    [
        ({"ticket": "x", "category": "billing", "urgency": "low"}, "reply", "missing field"),
        ({"ticket": 5, "category": "billing", "urgency": "low", "reply": "r"}, "ticket", "expected a string, got int"),
        ({"prompt": "p"}, "completion", "missing field"),
    ],
)
def test_field_errors_name_line_and_field(task, record, field, message):
    with pytest.raises(DataError, match=f"line 7, field '{field}': {message}"):
        data.to_messages(record, task, source="x.jsonl", line=7)


def test_masked_labels_decode_to_answer_plus_eos_only(tiny, tickets, task):
    _, tokenizer = tiny
    messages = task.to_messages(tickets[0])
    example = batches.tokenize_example(tokenizer, messages, max_length=1024)
    trained = [token for token in example.labels if token != IGNORE_INDEX]
    assert tokenizer.decode(trained) == task.answer_text(tickets[0]) + tokenizer.eos_token
    assert trained[-1] == tokenizer.eos_token_id == tokenizer.pad_token_id  # pad == eos, yet EOS is learned
    prompt_length = example.labels.index(trained[0])
    assert tokenizer.decode(example.input_ids[:prompt_length]) == batches.prompt_text(tokenizer, messages[:-1])
    assert all(label == IGNORE_INDEX for label in example.labels[:prompt_length])


def test_truncation_is_reported(tiny, tickets, task):
    _, tokenizer = tiny
    example = batches.tokenize_example(tokenizer, task.to_messages(tickets[0]), max_length=10)
    assert example.truncated and len(example.input_ids) == len(example.labels) == 10


def test_padding_collator_pads_right_and_masks():
    batch = batches.PaddingCollator(pad_token_id=0)(
        [
            {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]},
            {"input_ids": [8], "labels": [8]},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["input_ids"].dtype == torch.long


def test_stratified_split_keeps_shares_and_is_disjoint():
    records = [{"id": i, "category": "a" if i % 4 else "b"} for i in range(200)]
    splits = data.stratified_split(records, (0.8, 0.1, 0.1), key="category", seed=0)
    assert {len(s) for s in splits.values()} == {160, 20}
    ids = [r["id"] for s in splits.values() for r in s]
    assert sorted(ids) == list(range(200))
    for split in splits.values():
        assert data.label_counts(split, "category")["b"] / len(split) == pytest.approx(0.25)


def test_split_fractions_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        data.stratified_split([{}], (0.5, 0.1, 0.1))


def test_validate_records_keeps_reasons(tickets, task):
    bad = {"ticket": "x"}
    valid, rejected = data.validate_records(tickets + [bad], task, source="s.jsonl")
    assert valid == tickets
    assert rejected[0].line == 5 and "s.jsonl, line 5, field 'category': missing field" in rejected[0].reason


def test_write_jsonl_round_trips_and_leaves_no_partial(tmp_path, tickets):
    path = data.write_jsonl(tickets, tmp_path / "out" / "t.jsonl")
    assert data.read_jsonl(path) == tickets
    assert not list(tmp_path.glob("out/*.partial"))


def test_errors_after_blank_lines_name_the_real_line(tmp_path, task):
    path = tmp_path / "gappy.jsonl"
    path.write_text(
        '{"ticket": "a", "category": "billing", "urgency": "low", "reply": "ok"}\n\n\n'
        '{"ticket": "b", "urgency": "low", "reply": "ok"}\n'
    )
    records = data.read_jsonl(path)
    assert records.lines == [1, 4]
    kept, rejected = data.validate_records(records, task, str(path))
    assert len(kept) == 1 and rejected[0].line == 4 and "line 4" in rejected[0].reason
