"""Reading, validating, splitting and tokenizing fine-tuning data."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from ftlib import fileio
from ftlib.tasks import Task

IGNORE_INDEX = -100


class DataError(ValueError):
    """A problem in an input file, located by file, line and field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f", line {line}" if line else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class Records(list):
    """Records read from a file, remembering the file line each one came from (blank lines are skipped)."""

    def __init__(self, records=(), lines: list[int] | None = None):
        super().__init__(records)
        self.lines = lines if lines is not None else list(range(1, len(self) + 1))


def numbered(records: list[dict]):
    """``(line, record)`` pairs: the file line where ``read_jsonl`` found it, else the 1-based position."""
    lines = getattr(records, "lines", None)
    if lines is None or len(lines) != len(records):
        lines = range(1, len(records) + 1)
    return zip(lines, records)


def read_jsonl(path: str | Path) -> Records:
    """Read a JSONL file of objects, one per line (blank lines are skipped; ``.lines`` keeps line numbers).

    Raises:
        DataError: the file is missing, empty, not UTF-8, or a line is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(path, line, None, f"not valid UTF-8 (byte {error.start}); re-save the file as UTF-8") from None
    records = Records()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(path, number, None, f"not valid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(value, dict):
            raise DataError(path, number, None, f"expected a JSON object, got {type(value).__name__}")
        records.append(value)
        records.lines.append(number)
    if not records:
        raise DataError(path, None, None, "the file holds no records")
    return records


def _require_str(record: dict, field: str, source: str, line: int | None) -> str:
    if field not in record:
        raise DataError(source, line, field, "missing field")
    value = record[field]
    if not isinstance(value, str):
        raise DataError(source, line, field, f"expected a string, got {type(value).__name__}")
    return value


def to_messages(
    record: dict, task: Task | None = None, source: str = "<records>", line: int | None = None
) -> list[dict]:
    """Turn a record of any supported shape into chat messages ending with the assistant's answer.

    Shapes: ``messages`` (chat), ``prompt``/``completion``, ``instruction``/``input``/``output``,
    or the fields of ``task`` (e.g. ``ticket`` -> JSON answer).
    """
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise DataError(source, line, "messages", "expected a non-empty list of {role, content} objects")
        for message in messages:
            _require_str(message, "role", source, line)
            _require_str(message, "content", source, line)
        if messages[-1]["role"] != "assistant":
            raise DataError(source, line, "messages", "the last message must be the assistant's answer")
        return messages
    if "prompt" in record or "completion" in record:
        prompt = _require_str(record, "prompt", source, line)
        return [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": _require_str(record, "completion", source, line)},
        ]
    if "instruction" in record:
        instruction = _require_str(record, "instruction", source, line)
        extra = record.get("input") or ""
        user = f"{instruction}\n\n{extra}" if extra else instruction
        return [
            {"role": "user", "content": user},
            {"role": "assistant", "content": _require_str(record, "output", source, line)},
        ]
    if task is not None:
        if task.input_is_object:
            if not isinstance(record.get(task.input_field), dict) or not record[task.input_field]:
                problem = "missing field" if task.input_field not in record else "expected a non-empty JSON object"
                raise DataError(source, line, task.input_field, problem)
        else:
            _require_str(record, task.input_field, source, line)
        for field in task.answer_fields:
            _require_str(record, field, source, line)
        return task.to_messages(record)
    raise DataError(
        source, line, None, "unknown record shape: expected 'messages', 'prompt'/'completion' or 'instruction'/'output'"
    )


@dataclass
class Rejected:
    """A record that failed validation, with the reason."""

    line: int
    reason: str
    record: dict


def validate_records(records: list[dict], task: Task, source: str = "<records>") -> tuple[list[dict], list[Rejected]]:
    """Keep the records that have every field of ``task`` as text, rejecting the rest with a reason."""
    valid, rejected = [], []
    for line, record in numbered(records):
        try:
            to_messages(record, task, source, line)
        except DataError as error:
            rejected.append(Rejected(line, str(error), record))
        else:
            valid.append(record)
    return valid, rejected


def check_labels(records: list[dict], task: Task, source: str = "<records>", drop: bool = False) -> tuple[Records, int]:
    """The records whose closed-set labels (``task.label_values``) are all in their label sets.

    Returns:
        ``(kept, dropped)``: the records kept (with their file lines) and how many were dropped.

    Raises:
        DataError: at the first out-of-schema label, with its line and field, unless ``drop``.
    """
    kept, dropped = Records(lines=[]), 0
    for line, record in numbered(records):
        problem = task.label_error(record)
        if problem is None:
            kept.append(record)
            kept.lines.append(line)
        elif drop:
            dropped += 1
        else:
            raise DataError(source, line, *problem)
    return kept, dropped


def normalize_text(text: str) -> str:
    """Lower case with collapsed whitespace: the key for exact-duplicate detection."""
    return " ".join(text.lower().split())


def prompt_text(tokenizer, messages: list[dict]) -> str:
    """The chat-template rendering of every message but the answer, ending with the assistant cue."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool


def tokenize_example(tokenizer, messages: list[dict], max_length: int) -> TokenizedExample:
    """Tokenize one chat example with completion-only labels.

    The prompt is tokenized exactly as it will be at generation time, and its tokens get the
    label -100 (ignored by the loss). The answer tokens and the EOS token that closes the
    assistant turn keep their ids as labels: a model that never sees EOS as a target never
    learns to stop, a classic failure when pad == eos and padding is masked by token id.
    """
    prompt = tokenizer(prompt_text(tokenizer, messages[:-1]), add_special_tokens=False)["input_ids"]
    answer = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = prompt + answer
    labels = [IGNORE_INDEX] * len(prompt) + answer
    truncated = len(input_ids) > max_length
    return TokenizedExample(input_ids[:max_length], labels[:max_length], truncated)


class SupervisedDataset(torch.utils.data.Dataset):
    """Tokenized examples, ready for ``transformers.Trainer``."""

    def __init__(self, records: list[dict], tokenizer, max_length: int = 256, task: Task | None = None):
        tokenized = [
            tokenize_example(tokenizer, to_messages(r, task, line=line), max_length) for line, r in numbered(records)
        ]
        # A prompt longer than max_length leaves no answer token: such an example trains nothing.
        useless = [t for t in tokenized if all(label == IGNORE_INDEX for label in t.labels)]
        tokenized = [t for t in tokenized if t not in useless]
        if not tokenized:
            raise ValueError(f"No example keeps an answer token within max_length={max_length}: raise max_length")
        self.dropped_no_answer = len(useless)
        self.examples = [{"input_ids": t.input_ids, "labels": t.labels} for t in tokenized]
        self.truncated = sum(t.truncated for t in tokenized)
        self.lengths = [len(t.input_ids) for t in tokenized]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


def common_prefix_length(rows: list[list[int]]) -> int:
    """Leading tokens shared by every row, leaving each row at least one token of its own."""
    shortest = min(len(row) for row in rows)
    length = 0
    while length < shortest - 1 and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the positions whose *next* token is a label: the only logits the loss reads."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


class PaddingCollator:
    """Pads a batch on the right: pad id for inputs, 0 in the attention mask, -100 in labels.

    With ``answer_logits_only`` it adds ``logits_to_keep``, a boolean mask for ``transformers``
    models: the vocabulary projection then runs on the answer positions only (a third of a ticket
    example's tokens), which saves most of the lm_head compute and the full-vocabulary logits memory.

    With ``share_prefix`` it adds ``shared_prefix_length``: how many leading tokens every row of the
    batch has in common (the system prompt and the user-turn header: 63 of a ticket's ~136 tokens).
    ``ftlib.train`` runs that prefix once per batch instead of once per row.
    """

    def __init__(
        self,
        pad_token_id: int,
        pad_to_multiple_of: int | None = None,
        answer_logits_only: bool = False,
        share_prefix: bool = False,
    ):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.answer_logits_only = answer_logits_only
        self.share_prefix = share_prefix

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(example["input_ids"]) for example in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for row, example in enumerate(rows):
            n = len(example["input_ids"])
            input_ids[row, :n] = torch.tensor(example["input_ids"])
            labels[row, :n] = torch.tensor(example["labels"])
            attention_mask[row, :n] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        scored = answer_positions(labels)
        if self.answer_logits_only:
            batch["logits_to_keep"] = scored
        if self.share_prefix:
            # Stop before the first position whose logit the loss reads: the prefix pass returns no logits.
            first_scored = int(scored.float().argmax(dim=1).min())
            shared = common_prefix_length([example["input_ids"] for example in rows])
            batch["shared_prefix_length"] = min(shared, first_scored)
        return batch


def stratified_split(
    records: list[dict], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), key=None, seed: int = 0
) -> dict[str, list[dict]]:
    """Split into train/val/test, keeping each stratum's share the same in every split.

    Args:
        key: a field name, or a function of a record, giving its stratum; None for a plain random split.
    """
    if abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[str(key(record) if callable(key) else record.get(key)) if key else ""].append(record)
    rng = random.Random(seed)
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for name in sorted(groups):
        group = groups[name][:]
        rng.shuffle(group)
        n_val = round(len(group) * fractions[1])
        n_test = round(len(group) * fractions[2])
        splits["test"] += group[:n_test]
        splits["val"] += group[n_test : n_test + n_val]
        splits["train"] += group[n_test + n_val :]
    for part in splits.values():
        rng.shuffle(part)
    return splits


def label_counts(records: list[dict], field) -> dict[str, int]:
    """Counts of a field's values (or of ``field(record)`` when it is a function), sorted by value."""
    return dict(sorted(Counter(str(field(r) if callable(field) else r.get(field)) for r in records).items()))


def records_hash(records: list[dict]) -> str:
    """A stable hash of a list of records (order-sensitive), for run manifests."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


def write_jsonl(records: list[dict], path: str | Path) -> Path:
    """Write records atomically: a crash never leaves a half-written file in place."""
    return fileio.write_jsonl(records, path)


def token_lengths(records: list[dict], tokenizer, task: Task | None = None) -> list[int]:
    """Untruncated token count (prompt + answer + EOS) of each record, with the real chat template."""
    return [len(tokenize_example(tokenizer, to_messages(r, task), max_length=10**9).input_ids) for r in records]
